"""infra/tenant.bicep provisions what the stores check and use: the events container with the unique key
/triggerKey and the indexing policy of the Cosmos store, the definitions container's policy, and the
subscriptions container of the change feed (partitioned as CosmosSubscriptionStore writes)."""

from __future__ import annotations

import json
from typing import Any

from tree_sitter import Node

from engine.stores.cosmos import DEFINITIONS_INDEXING_POLICY, EVENTS_INDEXING_POLICY, EVENTS_UNIQUE_KEY_POLICY
from tests.functions.harness import ROOT
from tests.infra.bicep_source import outputs, parse, properties, resources, string_value, text, top_level

INFRA = ROOT / "infra"


def literal(node: Node) -> Any:
    """A Bicep literal (object, array, string, boolean, number) as Python."""
    match node.type:
        case "object":
            return {text(prop.named_children[0]).strip("'"): literal(prop.named_children[-1])
                    for prop in node.named_children if prop.type == "object_property"}
        case "array":
            return [literal(child) for child in node.named_children]
        case "string":
            return string_value(node)
        case "boolean":
            return text(node) == "true"
        case "number":
            return int(text(node))
    raise AssertionError(f"not a literal: {node.type} {text(node)!r}")


def _variables() -> dict[str, Node]:
    tree = parse(INFRA / "tenant.bicep")
    return {text(node.named_children[0]): node.named_children[-1] for node in top_level(tree, "variable_declaration")}


def _property(resource: str, key: str) -> Node:
    [value] = list(properties(resources(parse(INFRA / "tenant.bicep"))[resource][1], key))
    return value


def test_the_events_container_has_the_unique_key_and_indexing_policy_of_the_store() -> None:
    assert json.loads((INFRA / "events-indexing-policy.json").read_text()) == EVENTS_INDEXING_POLICY
    variables = _variables()
    assert text(_property("eventsContainer", "indexingPolicy")) == "eventsIndexingPolicy"
    assert text(variables["eventsIndexingPolicy"]) == "loadJsonContent('events-indexing-policy.json')"
    assert text(_property("eventsContainer", "uniqueKeyPolicy")) == "eventsUniqueKeyPolicy"
    assert literal(variables["eventsUniqueKeyPolicy"]) == EVENTS_UNIQUE_KEY_POLICY


def test_the_definitions_container_excludes_the_document_text() -> None:
    assert text(_property("definitionsContainer", "indexingPolicy")) == "definitionsIndexingPolicy"
    assert literal(_variables()["definitionsIndexingPolicy"]) == DEFINITIONS_INDEXING_POLICY


def test_the_subscriptions_container_is_provisioned_and_output() -> None:
    paths = _property("subscriptionsContainer", "paths")
    assert literal(paths) == ["/pk"]
    tree = parse(INFRA / "tenant.bicep")
    assert "subscriptionsContainer" in outputs(tree)
    [configuration] = [node for node in top_level(tree, "output_declaration")
                       if text(node.named_children[0]) == "tenantConfiguration"]
    assert "subscriptionsContainer: subscriptionsContainer.name" in text(configuration)
