"""Tenancy on Cosmos: the Cosmos tenant registry, onboarding (data plane and infra/tenant.bicep), and storage siloed
per tenant by the routed stores — a client for tenant A cannot reach B's data, even with B's instance ids."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain import InstanceNotFound, StoreUnavailable, TenantNotFound, WorkflowNotFound
from engine.drivers.cosmos import CosmosLocation
from engine.stores.routing import TenantRoutedDefinitionStore, TenantRoutedEventStore, routed_stores
from engine.tenants import InvalidTenantId, MemoryTenantRegistry, TenantAlreadyExists
from engine.tenants.cosmos import CosmosTenantRegistry
from engine.tenants.onboarding import onboard_cosmos_tenant, record_bicep_outputs, tenant_bicep_command
from engine.tenants.sealing import SEALED_PREFIX
from tests.contract.test_event_store import create, send
from tests.cosmos_fixtures import CosmosSilo

SECRET = "cosmos-test-secret-0123456789abcdef"


@pytest.fixture
def registry(cosmos_silo: CosmosSilo) -> CosmosTenantRegistry:
    return CosmosTenantRegistry(cosmos_silo.client, secret=SECRET, database=f"{cosmos_silo.prefix}-platform",
                                create=True)


# ---------------------------------------------------------------------------------------------- the registry

def test_the_cosmos_registry_implements_the_registry_port(registry: CosmosTenantRegistry) -> None:
    record, key = registry.create("acme", config={"plan": "free"})
    assert key.startswith("wmk_") and record.key_hash != key and record.config == {"plan": "free"}
    assert registry.get("acme") == record
    assert registry.authenticate(key) == record
    assert registry.authenticate(key + "x") is None
    with pytest.raises(TenantAlreadyExists):
        registry.create("acme")
    with pytest.raises(InvalidTenantId):
        registry.create("Not Valid")
    with pytest.raises(ValueError):
        registry.create("other", key=key)  # a key names one tenant
    with pytest.raises(TenantNotFound):
        registry.get("nobody")
    with pytest.raises(TenantNotFound):
        registry.rotate_key("nobody")

    new = registry.rotate_key("acme")
    assert registry.authenticate(key) is None and registry.authenticate(new) is not None
    chosen = registry.rotate_key("acme", key="wmk_chosen-key-0123456789")
    assert chosen == "wmk_chosen-key-0123456789" and registry.authenticate(chosen) is not None
    registry.create("beta")
    assert [r.id for r in registry.list()] == ["acme", "beta"]
    assert registry.update_config("beta", {"store": "sqlite"}).config == {"store": "sqlite"}
    registry.ping()
    docs = list(registry.client.get_database_client(registry.database).get_container_client("tenants")
                .query_items("SELECT * FROM c", enable_cross_partition_query=True))
    assert all(new not in json.dumps(doc) and chosen not in json.dumps(doc) for doc in docs)  # keys never stored


def test_the_cosmos_registry_seals_the_event_grid_key_in_its_document(registry: CosmosTenantRegistry) -> None:
    grid_key = "grid-access-key-0123456789abcdef=="
    config = {"eventGrid": {"endpoint": "https://acme.westeurope-1.eventgrid.azure.net/api/events", "key": grid_key}}
    record, _ = registry.create("acme", config=config)
    assert record.config == config and registry.get("acme").config == config, "the feed reads the real key"
    assert record.to_public()["config"]["eventGrid"]["key"] == "***"
    container = registry.client.get_database_client(registry.database).get_container_client("tenants")
    [doc] = list(container.query_items("SELECT * FROM c WHERE c.id = 'acme'", enable_cross_partition_query=True))
    assert grid_key not in json.dumps(doc) and doc["config"]["eventGrid"]["key"].startswith(SEALED_PREFIX)
    registry.update_config("acme", {**record.to_public()["config"], "plan": "paid"})  # "***" sent back: kept
    assert registry.get("acme").config["eventGrid"]["key"] == grid_key
    assert [r.config["eventGrid"]["key"] for r in registry.list()] == [grid_key]


def test_a_missing_registry_container_is_unavailable(cosmos_silo: CosmosSilo) -> None:
    registry = CosmosTenantRegistry(cosmos_silo.client, secret=SECRET, database=f"{cosmos_silo.prefix}-none")
    with pytest.raises(StoreUnavailable):
        registry.ping()
    with pytest.raises(StoreUnavailable):
        registry.get("acme")


# ---------------------------------------------------------------------------------------------- onboarding

def test_onboarding_creates_the_storage_and_records_the_configuration(cosmos_silo: CosmosSilo,
                                                                      registry: CosmosTenantRegistry) -> None:
    server = cosmos_silo.account.server
    database = f"{cosmos_silo.prefix}-acme"
    record, key = onboard_cosmos_tenant(registry, "acme", endpoint=server.endpoint, key=server.key,
                                        database=database, verify=False,
                                        event_grid_topic_endpoint="https://acme.westeurope-1.eventgrid.azure.net/api/events")
    assert registry.authenticate(key) == record
    assert record.config == {
        "store": "cosmos", "cosmosEndpoint": server.endpoint, "database": database, "eventsContainer": "events",
        "definitionsContainer": "definitions", "auth": "key",
        "eventGridTopicEndpoint": "https://acme.westeurope-1.eventgrid.azure.net/api/events",
        "eventGrid": {"endpoint": "https://acme.westeurope-1.eventgrid.azure.net/api/events"}}
    containers = {c["id"]: c for c in cosmos_silo.client.get_database_client(database).list_containers()}
    assert containers["events"]["partitionKey"]["paths"] == ["/instanceId"]
    assert containers["events"]["uniqueKeyPolicy"]["uniqueKeys"] == [{"paths": ["/triggerKey"]}]
    assert containers["definitions"]["partitionKey"]["paths"] == ["/workflowId"]

    with pytest.raises(TenantAlreadyExists):
        onboard_cosmos_tenant(registry, "acme", endpoint=server.endpoint, key=server.key, verify=False)
    with pytest.raises(ValueError, match="siloed"):  # another tenant may not be given acme's database
        onboard_cosmos_tenant(registry, "intruder", endpoint=server.endpoint, key=server.key, database=database,
                              verify=False)
    with pytest.raises(TenantNotFound):
        registry.get("intruder")


def test_the_bicep_command_and_recording_its_outputs() -> None:
    command = tenant_bicep_command("acme", "waymark-rg", cosmos_account="waymark-cosmos-abc",
                                   create_event_grid_topic=True, app_principal_id="1111-2222")
    assert shlex.split(command) == [
        "az", "deployment", "group", "create", "--resource-group", "waymark-rg", "--name", "waymark-tenant-acme",
        "--template-file", "infra/tenant.bicep", "--parameters", "tenantId=acme",
        "cosmosAccountName=waymark-cosmos-abc", "createEventGridTopic=true", "appPrincipalId=1111-2222",
        "--query", "properties.outputs", "--output", "json"]
    with pytest.raises(InvalidTenantId):
        tenant_bicep_command("Bad Id", "rg", cosmos_account="a")

    # What `az deployment group create … --query properties.outputs` prints for infra/tenant.bicep.
    outputs = {
        "tenantId": {"type": "String", "value": "acme"},
        "cosmosEndpoint": {"type": "String", "value": "https://waymark-cosmos-abc.documents.azure.com:443/"},
        "databaseName": {"type": "String", "value": "waymark-acme"},
        "eventsContainer": {"type": "String", "value": "events"},
        "definitionsContainer": {"type": "String", "value": "definitions"},
        "eventGridTopicEndpoint": {"type": "String", "value": "https://waymark-acme.eventgrid.azure.net/api/events"},
    }
    registry = MemoryTenantRegistry(secret=SECRET)
    record, key = record_bicep_outputs(registry, "acme", json.dumps(outputs))
    assert key is not None and registry.authenticate(key) == record
    assert record.config == {
        "store": "cosmos", "cosmosEndpoint": "https://waymark-cosmos-abc.documents.azure.com:443/",
        "database": "waymark-acme", "eventsContainer": "events", "definitionsContainer": "definitions",
        "auth": "identity", "eventGridTopicEndpoint": "https://waymark-acme.eventgrid.azure.net/api/events",
        "eventGrid": {"endpoint": "https://waymark-acme.eventgrid.azure.net/api/events"}}
    with pytest.raises(ValueError):
        record_bicep_outputs(registry, "other", json.dumps(outputs))  # acme's outputs
    replaced, again = record_bicep_outputs(registry, "acme", outputs)  # an existing tenant: configuration replaced
    assert again is None and replaced.config == record.config and registry.authenticate(key) == replaced


def test_recording_outputs_again_replaces_the_configuration(registry: CosmosTenantRegistry) -> None:
    first = {"tenantConfiguration": {"type": "Object", "value": {
        "id": "acme", "cosmosEndpoint": "https://a.documents.azure.com:443/", "databaseName": "waymark-acme",
        "eventsContainer": "events", "definitionsContainer": "definitions", "eventGridTopicEndpoint": ""}}}
    record, key = record_bicep_outputs(registry, "acme", first)
    assert key is not None and "eventGridTopicEndpoint" not in record.config
    second = {"properties": {"outputs": {
        "cosmosEndpoint": {"value": "https://b.documents.azure.com:443/"}, "databaseName": {"value": "acme-db"}}}}
    updated, again = record_bicep_outputs(registry, "acme", second)
    assert again is None and registry.authenticate(key) == updated
    assert (updated.config["cosmosEndpoint"], updated.config["database"]) == ("https://b.documents.azure.com:443/",
                                                                             "acme-db")


# ---------------------------------------------------------------------------------------------- siloing

@pytest.fixture
def routed(cosmos_silo: CosmosSilo, registry: CosmosTenantRegistry,
           tmp_path: Path) -> Iterator[tuple[TenantRoutedEventStore, TenantRoutedDefinitionStore]]:
    server = cosmos_silo.account.server
    for tenant in ("alpha", "beta"):
        onboard_cosmos_tenant(registry, tenant, endpoint=server.endpoint, key=server.key,
                              database=f"{cosmos_silo.prefix}-{tenant}", client=cosmos_silo.client)
    registry.create("gamma", config={"store": "sqlite"})
    events, definitions = routed_stores(registry, data_dir=tmp_path, cosmos_key=server.key, verify=False)
    yield events, definitions
    events.close()


def raw_ids(silo: CosmosSilo, tenant: str) -> set[str]:
    container = silo.client.get_database_client(f"{silo.prefix}-{tenant}").get_container_client("events")
    return {doc["instanceId"] for doc in container.query_items("SELECT c.instanceId FROM c WHERE c.kind = 'commit'",
                                                               enable_cross_partition_query=True)}


def test_a_tenant_cannot_reach_another_tenants_data_even_with_its_ids(
        cosmos_silo: CosmosSilo, routed: tuple[TenantRoutedEventStore, TenantRoutedDefinitionStore],
        tmp_path: Path, expense_claim: dict[str, Any]) -> None:
    events, definitions = routed
    create(events, "alpha", "shared", interests=["s:shared"], context={"owner": "alpha"})
    in_beta = create(events, "beta", "shared", interests=["s:shared"], context={"owner": "beta"},
                     trigger_id="create-in-beta")
    create(events, "beta", "beta-only", interests=["s:beta"])
    beta_tick = send(events, "beta", "beta-only", "tick", "t-beta")
    create(events, "gamma", "gamma-only")
    definitions.put("beta", expense_claim)

    # Every call for alpha, with beta's ids, subjects, trigger ids and positions, finds only alpha's own data.
    with pytest.raises(InstanceNotFound):
        events.load("alpha", "beta-only")
    assert events.read("alpha", "beta-only") == []
    assert events.find_trigger("alpha", "beta-only", "t-beta") is None
    assert events.find_trigger("alpha", "shared", "create-in-beta") is None
    assert events.load("alpha", "shared").context["owner"] == "alpha"
    assert [i.id for i in events.list_instances("alpha").items] == ["shared"]
    assert events.interested("alpha", ["s:beta"]) == []
    assert [c.instance_id for c in events.read_feed("alpha")] == ["shared"]
    assert beta_tick.position is not None
    events.mark_dispatched("alpha", [beta_tick.position, 99])
    assert [c.position for c in events.undispatched("beta")] == [in_beta.position, 2, beta_tick.position]
    with pytest.raises(WorkflowNotFound):
        definitions.get("alpha", "expense-claim")
    assert definitions.list("alpha") == [] and definitions.list("beta") == [("expense-claim", 1)]

    # In storage: one database per Cosmos tenant, holding that tenant's instances only; gamma is in its own file.
    assert raw_ids(cosmos_silo, "alpha") == {"shared"}
    assert raw_ids(cosmos_silo, "beta") == {"shared", "beta-only"}
    assert (tmp_path / "tenants" / "gamma.db").exists() and not (tmp_path / "tenants" / "alpha.db").exists()
    assert events.load("gamma", "gamma-only").version == 1
    with pytest.raises(InstanceNotFound):
        events.load("gamma", "shared")

    # A tenant the registry does not know has no storage at all.
    with pytest.raises(TenantNotFound):
        events.load("delta", "shared")
    with pytest.raises(TenantNotFound):
        definitions.list("delta")


def test_the_router_builds_one_client_per_account(cosmos_silo: CosmosSilo, registry: CosmosTenantRegistry,
                                                  tmp_path: Path) -> None:
    server = cosmos_silo.account.server
    for tenant in ("alpha", "beta"):
        onboard_cosmos_tenant(registry, tenant, endpoint=server.endpoint, key=server.key,
                              database=f"{cosmos_silo.prefix}-{tenant}", client=cosmos_silo.client)
    registry.create("nokey", config={"store": "cosmos", "cosmosEndpoint": "https://elsewhere.example:443/",
                                     "auth": "key"})
    registry.create("unknown", config={"store": "mongo"})
    events, _ = routed_stores(registry, data_dir=tmp_path, cosmos_keys={server.endpoint: server.key}, verify=False)
    router = events.router
    assert router.event_store("alpha") is router.event_store("beta")
    assert router.location("beta") == CosmosLocation(f"{cosmos_silo.prefix}-beta")
    with pytest.raises(StoreUnavailable):
        events.ping("nokey")  # key auth, and no key for that endpoint
    with pytest.raises(StoreUnavailable):
        events.ping("unknown")
    events.ping("alpha")
    assert events.repair_index("alpha") == 0
    events.close()
