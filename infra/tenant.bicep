// Onboarding of one Waymark tenant: its Cosmos database (in the platform's account) with the `events` container
// (partitioned by /instanceId, unique key /triggerKey), the `definitions` container, the `subscriptions`
// container of its change feed and the `parked` container of its parked commands, and optionally its own Event Grid topic (CloudEvents 1.0 input) that the app's
// identity may publish to.
//
// The events container's unique key can only be given when the container is created: the Cosmos store refuses a
// container without it (a trigger could be applied twice), so a tenant whose container predates it needs a new
// container and its data moved. Deploying again over an up-to-date tenant changes nothing (and adds the
// subscriptions container to a tenant that has none).
//
//   az deployment group create -g <rg> -f infra/tenant.bicep -p infra/tenant.bicepparam
//
// The outputs are the tenant configuration the onboarding records in the tenant registry
// (`tenantConfiguration`, and each value on its own). Run it before `POST /tenants`: the app's identity has a
// data-plane role on Cosmos DB, which cannot create databases or containers.

targetScope = 'resourceGroup'

@description('The tenant id (as in /tenants/{id}: lowercase letters, digits and hyphens, 2 to 63 characters).')
@minLength(2)
@maxLength(63)
param tenantId string

@description('Name of the platform Cosmos DB account (main.bicep output cosmosAccountName).')
param cosmosAccountName string

@description('Prefix of the tenant database name; the same as the app setting WAYMARK_TENANT_DATABASE_PREFIX.')
param tenantDatabasePrefix string = 'waymark-'

@description('The tenant\'s Cosmos database.')
param databaseName string = '${tenantDatabasePrefix}${tenantId}'

@description('Container of the event streams: one document per commit, partitioned by /instanceId.')
param eventsContainerName string = 'events'

@description('Container of the workflow definitions, partitioned by /workflowId.')
param definitionsContainerName string = 'definitions'

@description('Container of the change feed\'s subscriptions and delivery records, partitioned by /pk.')
param subscriptionsContainerName string = 'subscriptions'

@description('Container of the tenant\'s parked commands (those the engine could not process), partitioned by /pk.')
param parkedContainerName string = 'parked'

@description('Container of the timers due later than the command queue can hold a message (7 days), partitioned by /instanceId.')
param timersContainerName string = 'timers'

@description('Create an Event Grid topic for this tenant\'s change feed.')
param createEventGridTopic bool = false

@description('Name of the tenant\'s Event Grid topic (3 to 50 letters, digits and hyphens).')
@maxLength(50)
param eventGridTopicName string = take('waymark-${tenantId}', 50)

@description('Turn the topic\'s access keys off: only Entra ID identities with EventGrid Data Sender may publish.')
param eventGridDisableLocalAuth bool = true

@description('''Event subscriptions of the tenant's topic (with createEventGridTopic): who receives its CloudEvents. Each item:
{
  name: 'audit'                                   // 3 to 64 letters, digits and hyphens
  destination: { type: 'webhook', endpointUrl: 'https://…' }             // it must answer the CloudEvents handshake
             | { type: 'storageQueue', storageAccountId: '/subscriptions/…', queueName: 'events' }
             | { type: 'serviceBusQueue', resourceId: '/subscriptions/…/queues/events' }
             | { type: 'serviceBusTopic', resourceId: '/subscriptions/…/topics/events' }
  includedEventTypes: [ 'io.waymark.workflow.instance.faulted' ]          // optional: every type when absent
  maxDeliveryAttempts: 30                                                // optional, else the template's
  eventTimeToLiveInMinutes: 1440                                         // optional, else the template's
}
Storage queues and Service Bus are delivered to with the topic's own identity (given the sender roles on this resource
group below; a destination in another resource group needs the role granted there).''')
param eventSubscriptions array = []

@description('Retry policy of the event subscriptions (each may set its own): delivery attempts, 1 to 30.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Retry policy of the event subscriptions: minutes an event is retried for, 1 to 1440.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Storage account (in this resource group; main.bicep\'s will do) where the events Event Grid gives up on are dead-lettered, in a blob container of this tenant. Empty: no dead-lettering.')
param deadLetterStorageAccountName string = ''

@description('Blob container of the tenant\'s dead-lettered events (created in deadLetterStorageAccountName).')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string = take('eventgrid-deadletter-${tenantId}', 63)

@description('Principal id of the Function app\'s identity (main.bicep output identityPrincipalId); gets EventGrid Data Sender on the topic. Empty: no role assignment here (main.bicep already grants it on the resource group).')
param appPrincipalId string = ''

@description('Azure region of the Event Grid topic.')
param location string = resourceGroup().location

@description('Tags put on the topic.')
param tags object = {}

var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var serviceBusDataSenderRoleId = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var subscribing = createEventGridTopic && !empty(eventSubscriptions)
var deadLettering = createEventGridTopic && !empty(deadLetterStorageAccountName)
// One file, kept equal to EVENTS_INDEXING_POLICY of engine/stores/cosmos/containers.py (a test compares them).
var eventsIndexingPolicy = loadJsonContent('events-indexing-policy.json')
// EVENTS_UNIQUE_KEY_POLICY of engine/stores/cosmos/containers.py. Unique per logical partition, i.e. per instance: a trigger id
// is recorded once on an instance (the store's idempotency), and the store refuses a container without it.
var eventsUniqueKeyPolicy = {
  uniqueKeys: [
    {
      paths: [
        '/triggerKey'
      ]
    }
  ]
}
// DEFINITIONS_INDEXING_POLICY of engine/stores/cosmos/containers.py: the definition document itself is JSON text, never queried.
var definitionsIndexingPolicy = {
  indexingMode: 'consistent'
  automatic: true
  includedPaths: [
    {
      path: '/*'
    }
  ]
  excludedPaths: [
    {
      path: '/document/?'
    }
    {
      path: '/"_etag"/?'
    }
  ]
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

// Serverless account: no throughput on the database or its containers.
resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource eventsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: eventsContainerName
  properties: {
    resource: {
      id: eventsContainerName
      partitionKey: {
        paths: [
          '/instanceId'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: eventsIndexingPolicy
      uniqueKeyPolicy: eventsUniqueKeyPolicy
    }
  }
}

resource definitionsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: definitionsContainerName
  properties: {
    resource: {
      id: definitionsContainerName
      partitionKey: {
        paths: [
          '/workflowId'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: definitionsIndexingPolicy
    }
  }
}

// engine/feed/subscriptions_cosmos.py: the subscriptions (partition 'subscriptions') and the delivery records of
// commits not yet dispatched to all (partition 'delivery:{position}').
resource subscriptionsContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: subscriptionsContainerName
  properties: {
    resource: {
      id: subscriptionsContainerName
      partitionKey: {
        paths: [
          '/pk'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

// engine/stores/parked_cosmos.py: commands that could not be processed (malformed, failed on every delivery, held
// through an outage past the hold), all in the partition 'parked'.
resource parkedContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: parkedContainerName
  properties: {
    resource: {
      id: parkedContainerName
      partitionKey: {
        paths: [
          '/pk'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

// engine/stores/timers_cosmos.py: timers due past the queue's 7-day visibility limit, brought onto the queue by the
// bring_timers_forward function (one query by dueAt per tenant).
resource timersContainer 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: timersContainerName
  properties: {
    resource: {
      id: timersContainerName
      partitionKey: {
        paths: [
          '/instanceId'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = if (createEventGridTopic) {
  name: eventGridTopicName
  location: location
  tags: tags
  // Its own identity delivers to Storage queues and Service Bus and writes dead-lettered events: no keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    publicNetworkAccess: 'Enabled'
    disableLocalAuth: eventGridDisableLocalAuth
  }
}

resource topicDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (createEventGridTopic && !empty(appPrincipalId)) {
  name: guid(resourceGroup().id, eventGridTopicName, appPrincipalId, eventGridDataSenderRoleId)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deadLetterAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (deadLettering) {
  name: deadLetterStorageAccountName
}

resource deadLetterBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = if (deadLettering) {
  parent: deadLetterAccount
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (deadLettering) {
  parent: deadLetterBlobs
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deadLettering) {
  name: guid(deadLetterAccount.id, eventGridTopicName, storageBlobDataContributorRoleId)
  scope: deadLetterAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (subscribing) {
  name: guid(resourceGroup().id, eventGridTopicName, storageQueueDataMessageSenderRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (subscribing) {
  name: guid(resourceGroup().id, eventGridTopicName, serviceBusDataSenderRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSenderRoleId)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The topic's event subscriptions: CloudEvents 1.0 delivered, retried by the retry policy, then dead-lettered.
resource topicSubscriptions 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = [for subscription in (subscribing ? eventSubscriptions : []): {
  parent: topic
  name: subscription.name
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: contains(subscription, 'includedEventTypes') ? subscription.includedEventTypes : null
    }
    retryPolicy: {
      maxDeliveryAttempts: contains(subscription, 'maxDeliveryAttempts') ? subscription.maxDeliveryAttempts : maxDeliveryAttempts
      eventTimeToLiveInMinutes: contains(subscription, 'eventTimeToLiveInMinutes') ? subscription.eventTimeToLiveInMinutes : eventTimeToLiveInMinutes
    }
    destination: subscription.destination.type == 'webhook' ? {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: subscription.destination.endpointUrl
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    } : null
    deliveryWithResourceIdentity: subscription.destination.type == 'webhook' ? null : {
      identity: {
        type: 'SystemAssigned'
      }
      destination: subscription.destination.type == 'storageQueue' ? {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: subscription.destination.storageAccountId
          queueName: subscription.destination.queueName
          queueMessageTimeToLiveInSeconds: -1
        }
      } : {
        endpointType: subscription.destination.type == 'serviceBusTopic' ? 'ServiceBusTopic' : 'ServiceBusQueue'
        properties: {
          resourceId: subscription.destination.resourceId
        }
      }
    }
    deadLetterWithResourceIdentity: deadLettering ? {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterAccount.id
          blobContainerName: deadLetterContainerName
        }
      }
    } : null
  }
  dependsOn: [
    deadLetterContainer
    deadLetterWriter
    queueSender
    serviceBusSender
  ]
}]

var topicEndpoint = createEventGridTopic ? topic.properties.endpoint : ''
var topicId = createEventGridTopic ? topic.id : ''

output tenantId string = tenantId
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output database string = database.name
output eventsContainer string = eventsContainer.name
output definitionsContainer string = definitionsContainer.name
output subscriptionsContainer string = subscriptionsContainer.name
output parkedContainer string = parkedContainer.name
output timersContainer string = timersContainer.name
output eventGridTopicEndpoint string = topicEndpoint
@description('Resource id of the tenant\'s Event Grid topic (empty without one): the scope of event subscriptions.')
output eventGridTopicId string = topicId
@description('Principal id of the topic\'s identity (empty without a topic): grant it the sender role on a destination in another resource group.')
output eventGridTopicPrincipalId string = createEventGridTopic ? topic.identity.principalId : ''
@description('The event subscriptions made, and where dead-lettered events go.')
output eventSubscriptionNames array = [for subscription in (subscribing ? eventSubscriptions : []): subscription.name]
output deadLetterContainer string = deadLettering ? deadLetterContainerName : ''

// Exactly the tenant's configuration as the app reads it (engine/tenants/config.py; a test feeds each key to its
// parser): pass it as `config` to POST /tenants, or let `waymark tenants onboard --azure` do it.
@description('The tenant configuration to register: POST /tenants {"id": tenantId, "config": tenantConfiguration}.')
output tenantConfiguration object = {
  store: 'cosmos'
  auth: 'identity'
  cosmosEndpoint: cosmos.properties.documentEndpoint
  database: database.name
  eventsContainer: eventsContainer.name
  definitionsContainer: definitionsContainer.name
  subscriptionsContainer: subscriptionsContainer.name
  parkedContainer: parkedContainer.name
  timersContainer: timersContainer.name
  eventGridTopicEndpoint: topicEndpoint
  eventGridTopicId: topicId
}
