"""infra/tenant.bicep provisions what the stores check and use: the events container with the unique key
/triggerKey and the indexing policy of the Cosmos store, the definitions container's policy, and the
subscriptions container of the change feed (partitioned as CosmosSubscriptionStore writes)."""

from __future__ import annotations

import json
from typing import Any

from tree_sitter import Node

from engine.stores.cosmos import DEFINITIONS_INDEXING_POLICY, EVENTS_INDEXING_POLICY, EVENTS_UNIQUE_KEY_POLICY
from engine.tenants.config import CONFIG_KEYS, parse_tenant_config
from engine.tenants.onboarding import config_from_outputs
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


def _configuration() -> dict[str, Node]:
    """tenant.bicep's `tenantConfiguration` output: key -> value expression."""
    tree = parse(INFRA / "tenant.bicep")
    [declaration] = [node for node in top_level(tree, "output_declaration")
                     if text(node.named_children[0]) == "tenantConfiguration"]
    [value] = [child for child in declaration.named_children if child.type == "object"]
    return {text(prop.named_children[0]): prop.named_children[-1]
            for prop in value.named_children if prop.type == "object_property"}


def test_every_key_of_the_tenant_configuration_output_is_read_by_the_registry_parser() -> None:
    """Each key tenant.bicep outputs in `tenantConfiguration`, fed alone to the parser every host reads a tenant's
    configuration with, changes what it reads: a renamed key (the old `databaseName`) would be silently ignored."""
    configuration = _configuration()
    blank = parse_tenant_config({})
    samples = {"store": "cosmos", "auth": "identity"}
    for key, expression in configuration.items():
        value = string_value(expression) if expression.type == "string" else None
        sample = value if value else samples.get(key, f"sample-{key}")
        parsed = parse_tenant_config({key: sample})
        assert parsed != blank, f"tenantConfiguration.{key} is not a key the app reads"
        assert getattr(parsed, CONFIG_KEYS[key]) == sample
    assert set(configuration) == set(CONFIG_KEYS), "every key the app reads is one the template says"
    # And the whole object, as a deployment prints it, is what the onboarding records.
    outputs_json = {"tenantId": {"type": "String", "value": "acme"}, "tenantConfiguration": {"type": "Object", "value": {
        key: samples.get(key, "https://x.documents.azure.com:443/" if key == "cosmosEndpoint" else f"v-{key}")
        for key in configuration}}}
    recorded = config_from_outputs(outputs_json)
    assert parse_tenant_config(recorded) == parse_tenant_config(outputs_json["tenantConfiguration"]["value"])


def test_the_parked_container_is_provisioned_and_output() -> None:
    assert literal(_property("parkedContainer", "paths")) == ["/pk"]
    assert "parkedContainer" in outputs(parse(INFRA / "tenant.bicep"))
    assert text(_configuration()["parkedContainer"]) == "parkedContainer.name"
