"""Tenants on Cosmos DB: the tenant registry in a Cosmos container, and onboarding a tenant whose data is on Cosmos.

`CosmosTenantRegistry` implements the `TenantRegistry` port of engine/tenants.py in a container `tenants`
(partitioned by `/id`, one document per tenant) of the platform's database (main.bicep provisions it in Azure):

    {"id": "acme", "keyHash": "<HMAC-SHA256 hex>", "createdAt": "…", "config": {…}}

The key hash is found by a cross-partition query on `keyHash` (indexed). Cosmos cannot make it unique across
partitions, so `create` refuses a key already in use by querying first (a race of two onboardings given the
*same explicit* key is not caught; generated keys carry 256 random bits and never collide).

Onboarding a tenant whose events live on Cosmos (what `waymark tenants onboard ID --store cosmos …` and
`POST /tenants` call):

- key auth or local (`onboard_cosmos_tenant`): create its database and containers on the data plane
  (`create_if_not_exists`), record its configuration, issue its key;
- Azure with Entra ID (data-plane roles cannot create databases): deploy `infra/tenant.bicep`
  (`tenant_bicep_command` prints the command) and record what it outputs (`record_bicep_outputs`).
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import hmac
import json
import shlex
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions

from engine.domain.errors import StoreUnavailable, TenantNotFound
from engine.domain.events import timestamp
from engine.stores.cosmos import CosmosLocation, cosmos_client, ensure_tenant
from engine.tenant_config import CONFIG_KEYS, InvalidTenantConfig, parse_tenant_config
from engine.tenants import (
    ConfigSealing,
    KeyHasher,
    TenantAlreadyExists,
    TenantRecord,
    TenantRegistry,
    check_tenant_id,
    keep_config_secrets,
    new_key,
)

__all__ = ["CosmosTenantRegistry", "config_from_outputs", "cosmos_tenant_config", "onboard_cosmos_tenant",
           "record_bicep_outputs", "tenant_bicep_command"]

STORE = "tenant registry (cosmos)"


class CosmosTenantRegistry(ConfigSealing):
    """The tenant registry in a Cosmos container. Thread-safe; the client is the caller's (one per account).

    `create=True` creates the database and container if missing (key auth, local servers); in Azure, main.bicep
    provisions them and the app's identity only has data-plane rights.
    """

    def __init__(self, client: Any, *, secret: str | bytes, database: str = "waymark", container: str = "tenants",
                 create: bool = False) -> None:
        self.hasher = KeyHasher(secret)
        self.client = client
        self.database = database
        self.container_name = container
        if create:
            with self._translated():
                db = client.create_database_if_not_exists(database)
                db.create_container_if_not_exists(container, PartitionKey("/id"))
        self._container = client.get_database_client(database).get_container_client(container)

    def create(self, tenant_id: str, *, key: str | None = None,
               config: Mapping[str, Any] | None = None) -> tuple[TenantRecord, str]:
        check_tenant_id(tenant_id)
        key = key or new_key()
        record = TenantRecord(tenant_id, self.hasher.hash(key), timestamp(datetime.now(UTC)),
                              copy.deepcopy(dict(config or {})))
        if self._by_hash(record.key_hash) is not None:
            raise ValueError("this key is already the key of another tenant")
        with self._translated():
            try:
                self._container.create_item(self._document(record), no_response=True)
            except exceptions.CosmosResourceExistsError as e:
                raise TenantAlreadyExists(tenant_id) from e
        return record, key

    def get(self, tenant_id: str) -> TenantRecord:
        # A query, not a point read: cosmosdb-server answers a point read of a missing document with a 500.
        docs = self._query("SELECT * FROM c WHERE c.id = @id", partition=tenant_id, id=tenant_id)
        if not docs:
            raise TenantNotFound(tenant_id)
        return self._record(docs[0])

    def authenticate(self, key: str) -> TenantRecord | None:
        wanted = self.hasher.hash(key)
        record = self._by_hash(wanted)
        if record is None or not hmac.compare_digest(record.key_hash, wanted):
            return None
        return record

    def rotate_key(self, tenant_id: str, *, key: str | None = None) -> str:
        key = key or new_key()
        self._patch(tenant_id, [{"op": "set", "path": "/keyHash", "value": self.hasher.hash(key)}])
        return key

    def update_config(self, tenant_id: str, config: Mapping[str, Any]) -> TenantRecord:
        """Replace the tenant's configuration (e.g. with the outputs of infra/tenant.bicep)."""
        stored = self._sealed_config(keep_config_secrets(config, self.get(tenant_id).config))
        self._patch(tenant_id, [{"op": "set", "path": "/config", "value": stored}])
        return self.get(tenant_id)

    def list(self) -> list[TenantRecord]:
        return [self._record(doc) for doc in self._query("SELECT * FROM c ORDER BY c.id")]

    def ping(self) -> None:
        with self._translated():
            self._container.read()

    def close(self) -> None:
        """Nothing to release: the client is the caller's."""

    # ------------------------------------------------------------------------------------------ inside

    def _by_hash(self, key_hash: str) -> TenantRecord | None:
        docs = self._query("SELECT * FROM c WHERE c.keyHash = @hash", hash=key_hash)
        return self._record(docs[0]) if docs else None

    def _patch(self, tenant_id: str, operations: builtins.list[dict[str, Any]]) -> None:
        with self._translated():
            try:
                self._container.patch_item(tenant_id, tenant_id, operations, no_response=True)
            except exceptions.CosmosResourceNotFoundError as e:
                raise TenantNotFound(tenant_id) from e

    def _query(self, sql: str, *, partition: str | None = None,
               **parameters: Any) -> builtins.list[dict[str, Any]]:
        params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
        with self._translated():
            if partition is None:
                return list(self._container.query_items(sql, parameters=params, enable_cross_partition_query=True))
            return list(self._container.query_items(sql, parameters=params, partition_key=partition))

    def _document(self, record: TenantRecord) -> dict[str, Any]:
        """The stored document: the configuration's secrets sealed (SECRET_CONFIG_KEYS in engine/tenants.py)."""
        return {"id": record.id, "keyHash": record.key_hash, "createdAt": record.created_at,
                "config": self._sealed_config(record.config)}

    def _record(self, doc: Mapping[str, Any]) -> TenantRecord:
        return TenantRecord(doc["id"], doc["keyHash"], doc["createdAt"], self._opened_config(doc.get("config") or {}))

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Every driver error of the registry leaves as StoreUnavailable (a missing container too: then the
        registry itself is unreachable, not a tenant)."""
        try:
            yield
        except AzureError as e:
            status = getattr(e, "status_code", None)
            first = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
            where = f"{self.database}/{self.container_name}"
            raise StoreUnavailable(STORE, f"{where}: {'HTTP ' + str(status) if status else type(e).__name__}"
                                          f": {first}") from e


# ---------------------------------------------------------------------------------------------- onboarding

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
    try:
        registry.get(tenant_id)
    except TenantNotFound:
        pass
    else:
        raise TenantAlreadyExists(tenant_id)
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
