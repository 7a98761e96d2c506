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
// Who receives the topic's events: a webhook, a Storage queue and a Service Bus queue, retried, then dead-lettered.
param eventSubscriptions = [
  {
    name: 'faults-to-ops'
    destination: {
      type: 'webhook'
      endpointUrl: 'https://ops.example/hooks/waymark'
    }
    includedEventTypes: [
      'io.waymark.workflow.instance.faulted'
    ]
  }
  {
    name: 'all-to-queue'
    destination: {
      type: 'storageQueue'
      storageAccountId: '/subscriptions/REPLACE/resourceGroups/waymark-rg/providers/Microsoft.Storage/storageAccounts/REPLACE'
      queueName: 'acme-events'
    }
  }
  {
    name: 'all-to-service-bus'
    destination: {
      type: 'serviceBusQueue'
      resourceId: '/subscriptions/REPLACE/resourceGroups/waymark-rg/providers/Microsoft.ServiceBus/namespaces/REPLACE/queues/acme-events'
    }
    maxDeliveryAttempts: 10
    eventTimeToLiveInMinutes: 120
  }
]
param maxDeliveryAttempts = 30
param eventTimeToLiveInMinutes = 1440
param deadLetterStorageAccountName = 'waymarkREPLACE'
param tags = {
  app: 'waymark'
  tenant: 'acme'
}
