// Subscribes a Function (the Event Grid subscriber sample, function `waymark_events`) to a tenant's Waymark
// Event Grid topic (infra/tenant.bicep with createEventGridTopic=true). CloudEvents 1.0 in and out: the Function
// receives Waymark's CloudEvents as they were published (extensions `sequence` and `tenantid` included).
//
//   az deployment group create -g <tenant's resource group> -f samples/eventgrid_subscriber/subscription.bicep \
//     -p topicName=waymark-acme functionAppId=<the subscriber app's resource id>
//
// A module of its own, beside the platform's templates: subscribing is the consumer's decision, made in the
// consumer's deployment (it only needs the topic's name and its own Function app's id).

@description('Name of the tenant\'s Event Grid topic (infra/tenant.bicep eventGridTopicName), in this resource group.')
param topicName string

@description('Resource id of the Function app that hosts the subscriber (may be in another resource group).')
param functionAppId string

@description('Name of the Event Grid triggered function in that app.')
param functionName string = 'waymark_events'

@description('Name of the event subscription on the topic.')
param subscriptionName string = 'waymark-projection'

@description('CloudEvent types to receive; empty: all eight io.waymark.workflow.instance.* types.')
param includedEventTypes array = []

@description('Only events of these workflows (the `data.workflowId`); empty: every workflow.')
param workflowIds array = []

@description('Delivery attempts before an event is dead-lettered (or dropped, without a dead-letter container).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Resource id of a storage account for undeliverable events; empty: none.')
param deadLetterStorageAccountId string = ''

@description('Blob container in that account for undeliverable events.')
param deadLetterContainer string = 'waymark-deadletter'

@description('Up to this many events per delivery to the function (Event Grid batches for Azure Functions).')
@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int = 1

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

var typeFilter = empty(includedEventTypes) ? null : includedEventTypes
var workflowFilter = empty(workflowIds) ? [] : [
  {
    operatorType: 'StringIn'
    key: 'data.workflowId'
    values: workflowIds
  }
]

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: subscriptionName
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: typeFilter
      advancedFilters: workflowFilter
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterDestination: empty(deadLetterStorageAccountId) ? null : {
      endpointType: 'StorageBlob'
      properties: {
        resourceId: deadLetterStorageAccountId
        blobContainerName: deadLetterContainer
      }
    }
  }
}

@description('Resource id of the event subscription.')
output subscriptionId string = subscription.id
