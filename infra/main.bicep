// Waymark platform: the Function app (Flex Consumption, Python), its storage account with the command queue,
// Application Insights on a Log Analytics workspace, a serverless Cosmos DB account with the tenant registry, and
// one user-assigned managed identity that the app uses for everything (no keys in app settings but the two
// Waymark secrets).
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//
// Tenants are onboarded with tenant.bicep (their Cosmos database, containers and optional Event Grid topic).
// The app settings below are the ones engine/hosting/azure_settings.py declares; tests/infra keeps the two in step.

targetScope = 'resourceGroup'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Prefix of the resource names (lowercase letters and digits; a unique suffix is added where names are global).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'waymark'

@description('Name of the command queue; its poison queue is "<name>-poison".')
@minLength(3)
@maxLength(56)
param queueName string = 'commands'

@description('Cosmos database of the tenant registry.')
param registryDatabaseName string = 'waymark'

@description('Container of the tenant registry, partitioned by /id.')
param registryContainerName string = 'tenants'

@description('Prefix of a tenant database name (prefix + tenant id); tenant.bicep uses the same default.')
param tenantDatabasePrefix string = 'waymark-'

@description('Python version of the Function app.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Upper bound of Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of one Flex Consumption instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('The admin key of Waymark (at least 16 characters): authorises the admin routes such as POST /tenants.')
@secure()
@minLength(16)
param adminKey string

@description('Server secret (at least 16 characters) that tenant keys are hashed with. Never change it: every issued tenant key would stop working.')
@secure()
@minLength(16)
param serverSecret string

@description('NCRONTAB schedule of the outbox sweeper (six fields, seconds first).')
param sweepSchedule string = '0 */1 * * * *'

@description('Seconds a commit may stay undispatched before the sweeper republishes it.')
@minValue(0)
param outboxGraceSeconds int = 60

@description('Upper bound of Prefer: wait=N, in seconds (a Function app answers HTTP within 230 s).')
@minValue(0)
@maxValue(230)
param maxWaitSeconds int = 30

@description('Log level of the engine.')
@allowed([
  'critical'
  'error'
  'warning'
  'info'
  'debug'
])
param logLevel string = 'info'

@description('Seconds a command is held through an outage of its tenant\'s storage before it is parked (WAYMARK_HOLD_SECONDS).')
@minValue(0)
param holdSeconds int = 86400

@description('First delay, in seconds, of a command held through an outage; doubled on each attempt.')
@minValue(0)
param holdBaseDelaySeconds int = 2

@description('Longest delay, in seconds, between two attempts of a held command.')
@minValue(0)
param holdMaxDelaySeconds int = 300

@description('Consecutive storage failures of a tenant after which its circuit breaker opens.')
@minValue(1)
param breakerThreshold int = 3

@description('Seconds an open circuit breaker waits before one command probes the storage again.')
@minValue(0)
param breakerCooldownSeconds int = 5

@description('The longest total deadline, in seconds, of one http action or condition call (connect, send and every read).')
@minValue(1)
@maxValue(300)
param outboundMaxSeconds int = 30

@description('How long, in seconds, an http action or condition may keep retrying from its first attempt.')
@minValue(1)
param outboundActionMaxSeconds int = 600

@description('The largest answer body, in bytes, an http action or condition reads.')
@minValue(1024)
param outboundMaxResponseBytes int = 262144

@description('The total deadline, in seconds, of one webhook request.')
@minValue(1)
@maxValue(300)
param feedTimeoutSeconds int = 10

@description('The most steps a CEL evaluation may take, bounded before it runs; past it the instance faults with `ExpressionBudgetExceeded` (docs: Multi-tenant safety).')
@minValue(1000)
param expressionMaxSteps int = 20000000

@description('Seconds a CEL evaluation may take; one that ran longer faults its instance once it returns.')
param expressionMaxSeconds string = '2'

@description('Static change-feed subscriptions (WAYMARK_FEED_SUBSCRIPTIONS): a JSON list of {"name", "endpoint", "types"?, "secret"?, "mode"?, "tenants"?}; empty for none. Secure: it may hold webhook secrets.')
@secure()
param feedSubscriptions string = ''

@description('Turn Cosmos DB key authentication off: only Entra ID identities with a data-plane role get in.')
param cosmosDisableLocalAuth bool = true

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Tags put on every resource.')
param tags object = {}

var suffix = uniqueString(resourceGroup().id)
var storageAccountName = take(toLower('${replace(namePrefix, '-', '')}${suffix}'), 24)
var cosmosAccountName = '${namePrefix}-cosmos-${suffix}'
var functionAppName = '${namePrefix}-func-${suffix}'
var deploymentContainerName = 'app-package'

// Built-in role definition ids (the same in every tenant of Azure).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'
// Cosmos DB Built-in Data Contributor: a data-plane role definition of the account, not an Azure RBAC role.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

// --- identity ------------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-identity'
  location: location
  tags: tags
}

// --- monitoring ----------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs-${suffix}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-insights-${suffix}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
  }
}

// --- storage: the Functions host's storage, the deployment package and the command queue ---------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource commandQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: queueName
}

// The Functions host moves a message here after host.json's maxDequeueCount; so does the queue adapter.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${queueName}-poison'
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// --- Cosmos DB: serverless, the tenant registry ---------------------------------------------------------------

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: cosmosAccountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    disableLocalAuth: cosmosDisableLocalAuth
    minimalTlsVersion: 'Tls12'
  }
}

resource registryDatabase 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: registryDatabaseName
  properties: {
    resource: {
      id: registryDatabaseName
    }
  }
}

resource registryContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: registryDatabase
  name: registryContainerName
  properties: {
    resource: {
      id: registryContainerName
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

// Scoped to the whole account, so the app also reaches every tenant database tenant.bicep adds later.
resource cosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, identity.id, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: identity.properties.principalId
    scope: cosmos.id
  }
}

// --- Event Grid: the app may publish to every topic of this resource group (tenant topics) -------------------

resource eventGridDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, identity.id, eventGridDataSenderRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// --- the Function app ----------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${namePrefix}-plan-${suffix}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      // One literal list: tests/infra compares its names with engine/hosting/azure_settings.py.
      appSettings: [
        // The Functions host's own storage, identity-based.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        // Waymark (engine/hosting/azure_settings.py).
        {
          name: 'WAYMARK_STORE'
          value: 'cosmos'
        }
        {
          name: 'WAYMARK_COSMOS_ENDPOINT'
          value: cosmos.properties.documentEndpoint
        }
        {
          name: 'WAYMARK_COSMOS_VERIFY_TLS'
          value: 'true'
        }
        {
          name: 'WAYMARK_TENANT_REGISTRY_DATABASE'
          value: registryDatabaseName
        }
        {
          name: 'WAYMARK_TENANT_REGISTRY_CONTAINER'
          value: registryContainerName
        }
        {
          name: 'WAYMARK_TENANT_DATABASE_PREFIX'
          value: tenantDatabasePrefix
        }
        {
          name: 'WAYMARK_QUEUE_NAME'
          value: queueName
        }
        {
          name: 'WAYMARK_QUEUE__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'WAYMARK_QUEUE__credential'
          value: 'managedidentity'
        }
        {
          name: 'WAYMARK_QUEUE__clientId'
          value: identity.properties.clientId
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identity.properties.clientId
        }
        {
          name: 'WAYMARK_ADMIN_KEY'
          value: adminKey
        }
        {
          name: 'WAYMARK_SECRET'
          value: serverSecret
        }
        {
          name: 'WAYMARK_SWEEP_SCHEDULE'
          value: sweepSchedule
        }
        {
          name: 'WAYMARK_OUTBOX_GRACE_SECONDS'
          value: string(outboxGraceSeconds)
        }
        {
          name: 'WAYMARK_MAX_WAIT_SECONDS'
          value: string(maxWaitSeconds)
        }
        {
          name: 'WAYMARK_LOG_LEVEL'
          value: logLevel
        }
        {
          name: 'WAYMARK_OUTBOUND_MAX_SECONDS'
          value: string(outboundMaxSeconds)
        }
        {
          name: 'WAYMARK_OUTBOUND_ACTION_MAX_SECONDS'
          value: string(outboundActionMaxSeconds)
        }
        {
          name: 'WAYMARK_OUTBOUND_MAX_RESPONSE_BYTES'
          value: string(outboundMaxResponseBytes)
        }
        {
          name: 'WAYMARK_FEED_TIMEOUT_SECONDS'
          value: string(feedTimeoutSeconds)
        }
        {
          name: 'WAYMARK_EXPRESSION_MAX_STEPS'
          value: string(expressionMaxSteps)
        }
        {
          name: 'WAYMARK_EXPRESSION_MAX_SECONDS'
          value: expressionMaxSeconds
        }
        {
          name: 'WAYMARK_FEED_SUBSCRIPTIONS'
          value: feedSubscriptions
        }
        {
          name: 'WAYMARK_HOLD_SECONDS'
          value: string(holdSeconds)
        }
        {
          name: 'WAYMARK_HOLD_BASE_DELAY_SECONDS'
          value: string(holdBaseDelaySeconds)
        }
        {
          name: 'WAYMARK_HOLD_MAX_DELAY_SECONDS'
          value: string(holdMaxDelaySeconds)
        }
        {
          name: 'WAYMARK_BREAKER_THRESHOLD'
          value: string(breakerThreshold)
        }
        {
          name: 'WAYMARK_BREAKER_COOLDOWN_SECONDS'
          value: string(breakerCooldownSeconds)
        }
      ]
    }
  }
  // The host reads its storage and the queue as soon as it starts: grant the roles first.
  dependsOn: [
    blobDataOwner
    queueDataContributor
    cosmosDataContributor
    deploymentContainer
    commandQueue
    poisonQueue
    registryContainer
  ]
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output queueServiceUri string = storage.properties.primaryEndpoints.queue
output cosmosAccountName string = cosmos.name
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output appInsightsName string = appInsights.name
