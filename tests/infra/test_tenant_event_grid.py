"""infra/tenant.bicep's Event Grid consumers, read with tree-sitter-bicep (Bicep cannot be compiled here): the topic's
event subscriptions (webhook, Storage queue and Service Bus destinations, CloudEvents 1.0, a retry policy and a
dead-letter blob container, delivered with the topic's own identity) and the outputs an operator needs; the
parameter file shows one subscription of each destination type."""

from __future__ import annotations

from pathlib import Path

from tree_sitter import Node

from tests.infra.bicep_source import (
    outputs,
    parse,
    problems,
    properties,
    resources,
    string_value,
    template_params,
    text,
    top_level,
    walk,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"


def _strings(node: Node) -> set[str]:
    return {value for child in walk(node) if (value := string_value(child)) is not None}


def test_the_topic_has_event_subscriptions_with_every_destination_type() -> None:
    tree = parse(INFRA / "tenant.bicep")
    assert problems(tree) == []
    declared = resources(tree)
    kind, subscriptions = declared["topicSubscriptions"]
    assert kind.startswith("Microsoft.EventGrid/topics/eventSubscriptions@")
    assert any(child.type == "for_statement" for child in walk(subscriptions)), "one per item of eventSubscriptions"
    assert "eventSubscriptions" in text(subscriptions) and "parent: topic" in text(subscriptions)
    values = _strings(subscriptions)
    assert {"WebHook", "StorageQueue", "ServiceBusQueue", "ServiceBusTopic", "StorageBlob",
            "CloudEventSchemaV1_0", "SystemAssigned"} <= values
    [retry] = list(properties(subscriptions, "retryPolicy"))
    assert {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= {
        text(prop.named_children[0]) for prop in retry.named_children if prop.type == "object_property"}
    [dead_letter] = list(properties(subscriptions, "deadLetterDestination"))
    assert "blobContainerName: deadLetterContainerName" in text(dead_letter)
    assert [text(node) for node in properties(subscriptions, "includedEventTypes")]  # a filter by type
    # The topic's identity delivers and dead-letters (no keys), with the roles to do it.
    assert "SystemAssigned" in _strings(declared["topic"][1])
    role_ids = text(tree.root_node)
    for role in ("ba92f5b4-2d11-453d-a403-e96b0029c9fe",  # Storage Blob Data Contributor (dead letters)
                 "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",  # Storage Queue Data Message Sender
                 "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"):  # Azure Service Bus Data Sender
        assert role in role_ids
    kind, container = declared["deadLetterContainer"]
    assert kind.startswith("Microsoft.Storage/storageAccounts/blobServices/containers@")
    assert "publicAccess: 'None'" in text(container)


def test_the_template_outputs_what_an_operator_of_the_topic_needs() -> None:
    tree = parse(INFRA / "tenant.bicep")
    assert {"eventGridTopicId", "eventGridTopicEndpoint", "eventGridTopicPrincipalId", "eventSubscriptionNames",
            "deadLetterContainer"} <= set(outputs(tree))
    params = template_params(tree)
    for name in ("eventSubscriptions", "maxDeliveryAttempts", "eventTimeToLiveInMinutes",
                 "deadLetterStorageAccountName", "deadLetterContainerName"):
        assert params[name].has_default, name  # optional: a tenant without a topic needs none of them


def test_the_parameter_file_subscribes_one_of_each_destination_type() -> None:
    tree = parse(INFRA / "tenant.bicepparam")
    [declaration] = [node for node in top_level(tree, "variable_declaration")
                     if text(node.named_children[0]) == "eventSubscriptions"]
    destinations = [string_value(node) for node in properties(declaration, "type")]
    assert sorted(destinations) == ["serviceBusQueue", "storageQueue", "webhook"]
    assert "endpointUrl" in text(declaration) and "queueName" in text(declaration)
