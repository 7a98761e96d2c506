// Example parameters of tenant.bicep: onboarding the tenant `acme` with its own Event Grid topic.
// cosmosAccountName and appPrincipalId are outputs of the main.bicep deployment:
//
//   az deployment group show -g waymark-rg -n main --query properties.outputs
//   az deployment group create -g waymark-rg -n tenant-acme -f infra/tenant.bicep -p infra/tenant.bicepparam
using './tenant.bicep'

param tenantId = 'acme'
param cosmosAccountName = 'waymark-cosmos-REPLACE'
param tenantDatabasePrefix = 'waymark-'
param eventsContainerName = 'events'
param definitionsContainerName = 'definitions'
param createEventGridTopic = true
param eventGridTopicName = 'waymark-acme'
param eventGridDisableLocalAuth = true
param appPrincipalId = '00000000-0000-0000-0000-000000000000'
param tags = {
  app: 'waymark'
  tenant: 'acme'
}
