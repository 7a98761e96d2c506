// Example parameters of main.bicep. The two secrets come from the environment of the deploying shell
// (never commit them):
//
//   export WAYMARK_ADMIN_KEY=$(openssl rand -base64 32) WAYMARK_SECRET=$(openssl rand -base64 32)
//   az deployment group create -g waymark-rg -f infra/main.bicep -p infra/main.bicepparam
using './main.bicep'

param location = 'westeurope'
param namePrefix = 'waymark'
param queueName = 'commands'
param registryDatabaseName = 'waymark'
param registryContainerName = 'tenants'
param tenantDatabasePrefix = 'waymark-'
param pythonVersion = '3.11'
param maximumInstanceCount = 40
param instanceMemoryMB = 2048
param adminKey = readEnvironmentVariable('WAYMARK_ADMIN_KEY')
param serverSecret = readEnvironmentVariable('WAYMARK_SECRET')
param sweepSchedule = '0 */1 * * * *'
param outboxGraceSeconds = 60
param maxWaitSeconds = 30
param logLevel = 'info'
param feedSubscriptions = ''
param holdSeconds = 86400
param holdBaseDelaySeconds = 2
param holdMaxDelaySeconds = 300
param breakerThreshold = 3
param breakerCooldownSeconds = 5
param cosmosDisableLocalAuth = true
param logRetentionDays = 30
param tags = {
  app: 'waymark'
}
