"""Onboarding a tenant whose events live on Cosmos DB (what `waymark tenants onboard ID --store cosmos …` and
`POST /tenants` call):

- key auth or local (`onboard_cosmos_tenant`): create its database and containers on the data plane
  (`create_if_not_exists`), record its configuration, issue its key;
- Azure with Entra ID (data-plane roles cannot create databases): deploy `infra/tenant.bicep`
  (`tenant_bicep_command` prints the command) and record what it outputs (`record_bicep_outputs`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError

from engine.domain.errors import StoreUnavailable, TenantNotFound
from engine.drivers.cosmos import CosmosLocation, cosmos_client
from engine.stores.cosmos import ensure_tenant
from engine.tenants.base import TenantAlreadyExists, TenantRecord, TenantRegistry, check_tenant_id, refuse_existing
from engine.tenants.config import CONFIG_KEYS, InvalidTenantConfig, parse_tenant_config

__all__ = ["config_from_outputs", "cosmos_tenant_config", "onboard_cosmos_tenant", "record_bicep_outputs",
           "tenant_bicep_command"]


def cosmos_tenant_config(*, endpoint: str, location: CosmosLocation, auth: str,
                         event_grid_topic_endpoint: str | None = None) -> dict[str, Any]:
    """The configuration a Cosmos tenant's record carries (what engine/stores/routing.py reads)."""
    if auth not in ("key", "identity"):
        raise ValueError(f"auth must be 'key' or 'identity', not {auth!r}")
    config: dict[str, Any] = {"store": "cosmos", "cosmosEndpoint": endpoint, "database": location.database,
                              "eventsContainer": location.events_container,
                              "definitionsContainer": location.definitions_container, "auth": auth}
    if event_grid_topic_endpoint:
        config["eventGridTopicEndpoint"] = event_grid_topic_endpoint
        config["eventGrid"] = {"endpoint": event_grid_topic_endpoint}  # what the change feed reads (app identity)
    return config


def onboard_cosmos_tenant(registry: TenantRegistry, tenant_id: str, *, endpoint: str, key: str | None = None,
                          credential: Any = None, database: str | None = None, events_container: str = "events",
                          definitions_container: str = "definitions", create: bool = True,
                          database_prefix: str = "waymark-", event_grid_topic_endpoint: str | None = None,
                          verify: bool = True, client: Any = None,
                          tenant_key: str | None = None) -> tuple[TenantRecord, str]:
    """Onboard a tenant whose data lives in its own database of the Cosmos account at `endpoint`.

    With `create`, its database and containers are created first if missing (data plane `create_if_not_exists`:
    a key, or an identity with control-plane rights); without it they must exist already (infra/tenant.bicep).
    Then its configuration is recorded and its key issued: returns (record, tenant key — shown once).
    Raises TenantAlreadyExists, InvalidTenantId, ValueError (the database is another tenant's), StoreUnavailable.
    `client`: an existing client of that account (else one is built from `key` or `credential`).
    """
    check_tenant_id(tenant_id)
    location = CosmosLocation(database or f"{database_prefix}{tenant_id}", events_container, definitions_container)
    refuse_existing(registry, tenant_id)
    for other in registry.list():
        if (str(other.config.get("cosmosEndpoint", "")).rstrip("/").lower() == endpoint.rstrip("/").lower()
                and other.config.get("database") == location.database):
            raise ValueError(f"database {location.database!r} is tenant {other.id!r}'s: a tenant's data is siloed "
                             "in a database of its own")
    if create:
        owned = client is None  # a client made here is closed here (its pooled TLS connections with it)
        if client is None:
            client = cosmos_client(endpoint, key=key, credential=None if key is not None else credential,
                                   verify=verify)
        try:
            ensure_tenant(client, location)
        except AzureError as e:
            raise StoreUnavailable("cosmos", f"creating the storage of tenant {tenant_id!r} at {endpoint}: {e}") from e
        finally:
            if owned:
                client.close()
    config = cosmos_tenant_config(endpoint=endpoint, location=location, auth="key" if key is not None else "identity",
                                  event_grid_topic_endpoint=event_grid_topic_endpoint)
    return registry.create(tenant_id, key=tenant_key, config=config)


def tenant_bicep_command(tenant_id: str, resource_group: str, *, cosmos_account: str, database: str | None = None,
                         events_container: str = "events", definitions_container: str = "definitions",
                         create_event_grid_topic: bool = False, app_principal_id: str | None = None,
                         template: str = "infra/tenant.bicep", deployment_name: str | None = None) -> str:
    """The `az deployment group create` command that provisions a tenant's storage in Azure (infra/tenant.bicep),
    printing its outputs as JSON — what `record_bicep_outputs` takes."""
    check_tenant_id(tenant_id)
    parameters = [f"tenantId={tenant_id}", f"cosmosAccountName={cosmos_account}"]
    if database:
        parameters.append(f"databaseName={database}")
    if events_container != "events":
        parameters.append(f"eventsContainerName={events_container}")
    if definitions_container != "definitions":
        parameters.append(f"definitionsContainerName={definitions_container}")
    if create_event_grid_topic:
        parameters.append("createEventGridTopic=true")
    if app_principal_id:
        parameters.append(f"appPrincipalId={app_principal_id}")
    words = ["az", "deployment", "group", "create", "--resource-group", resource_group,
             "--name", deployment_name or f"waymark-tenant-{tenant_id}", "--template-file", template,
             "--parameters", *parameters, "--query", "properties.outputs", "--output", "json"]
    return shlex.join(words)


def _outputs(outputs_json: str | Mapping[str, Any]) -> dict[str, Any]:
    """The outputs of a deployment as {name: value}: from `--query properties.outputs` ({name: {type, value}}), the
    whole deployment JSON, or plain {name: value}; `tenantConfiguration`'s keys are merged in."""
    data: Any = json.loads(outputs_json) if isinstance(outputs_json, str) else dict(outputs_json)
    if isinstance(data, Mapping) and isinstance(data.get("properties"), Mapping):
        data = data["properties"].get("outputs", {})
    if not isinstance(data, Mapping):
        raise ValueError("the deployment outputs are not a JSON object")
    values = {name: value.get("value") if isinstance(value, Mapping) and "value" in value else value
              for name, value in data.items()}
    nested = values.get("tenantConfiguration")
    if isinstance(nested, Mapping):
        values = {**values, **nested}
    return values


def config_from_outputs(outputs_json: str | Mapping[str, Any], *, auth: str = "identity") -> dict[str, Any]:
    """The tenant configuration to record from infra/tenant.bicep's outputs: its `tenantConfiguration` (read by
    `parse_tenant_config`, so every key the template outputs is one the app reads), with `auth` when the template
    did not say. Raises ValueError when the outputs are not those of tenant.bicep."""
    values = _outputs(outputs_json)
    try:
        parsed = parse_tenant_config(values)
    except InvalidTenantConfig as e:
        raise ValueError(str(e)) from e
    if not parsed.cosmos_endpoint or not parsed.database:
        raise ValueError("the outputs have no cosmosEndpoint and database: not those of infra/tenant.bicep")
    location = CosmosLocation(parsed.database, parsed.events_container, parsed.definitions_container)
    config = cosmos_tenant_config(endpoint=parsed.cosmos_endpoint, location=location, auth=parsed.auth or auth,
                                  event_grid_topic_endpoint=parsed.event_grid_topic_endpoint)
    for key, default in (("subscriptionsContainer", "subscriptions"), ("parkedContainer", "parked"),
                         ("timersContainer", "timers")):
        value = getattr(parsed, CONFIG_KEYS[key])
        if value != default:
            config[key] = value
    if parsed.event_grid_topic_id:
        config["eventGridTopicId"] = parsed.event_grid_topic_id
    return config


def record_bicep_outputs(registry: TenantRegistry, tenant_id: str, outputs_json: str | Mapping[str, Any], *,
                         auth: str = "identity", tenant_key: str | None = None) -> tuple[TenantRecord, str | None]:
    """Record what infra/tenant.bicep created as the tenant's configuration: a new tenant is registered (its key
    issued, returned once); an existing one gets its configuration replaced (key None; the registry must have
    `update_config`). Raises ValueError when the outputs are not those of this tenant's deployment."""
    values = _outputs(outputs_json)
    if values.get("tenantId") not in (None, tenant_id):
        raise ValueError(f"these outputs are tenant {values.get('tenantId')!r}'s, not {tenant_id!r}'s")
    config = config_from_outputs(values, auth=auth)
    try:
        registry.get(tenant_id)
    except TenantNotFound:
        record, key = registry.create(tenant_id, key=tenant_key, config=config)
        return record, key
    update = getattr(registry, "update_config", None)
    if not callable(update):
        raise TenantAlreadyExists(tenant_id)
    updated: TenantRecord = update(tenant_id, config)
    return updated, None
