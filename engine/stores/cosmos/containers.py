"""A tenant's Cosmos containers: their creation (`ensure_tenant`, with the policies the events container needs),
and `Silos`, the stores' cache of each tenant's container clients, where driver errors are translated."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey, exceptions
from azure.cosmos.container import ContainerProxy

from engine.domain import StoreUnavailable, TenantNotFound
from engine.drivers.cosmos import CosmosLocation, Resolver, describe

STORE = "cosmos"

# Commit documents keep their events and instance as JSON text: never indexed, and exact (see documents.py).
EVENTS_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": "/events/?"}, {"path": "/instance/?"}, {"path": '/"_etag"/?'}],
    # Equality filters then the ORDER BY field: what the cross-partition queries of the feed, the outbox and the
    # listings filter and sort on (real Cosmos serves them from these at a lower RU charge).
    "compositeIndexes": [
        [{"path": "/kind", "order": "ascending"}, {"path": "/position", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/dispatched", "order": "ascending"},
         {"path": "/position", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/indexed", "order": "ascending"},
         {"path": "/position", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/instanceId", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/status", "order": "ascending"},
         {"path": "/instanceId", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/workflowId", "order": "ascending"},
         {"path": "/instanceId", "order": "ascending"}],
        [{"path": "/kind", "order": "ascending"}, {"path": "/state", "order": "ascending"},
         {"path": "/instanceId", "order": "ascending"}],
    ],
}
# Unique keys are enforced per logical partition, i.e. per instance: the idempotency of trigger ids.
EVENTS_UNIQUE_KEY_POLICY: dict[str, Any] = {"uniqueKeys": [{"paths": ["/triggerKey"]}]}
DEFINITIONS_INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": "/document/?"}, {"path": '/"_etag"/?'}],
}

_COSMOS_NAME = re.compile(r"[^/\\?#\x00-\x1f\x7f]{1,255}")


def ensure_tenant(client: CosmosClient, location: CosmosLocation) -> None:
    """Create the tenant's database and containers if they do not exist (data plane: needs a key or a control-plane
    identity; with Entra ID data-plane roles only, provision them with infra/tenant.bicep instead)."""
    # `*_if_not_exists` reads, then creates: two processes onboarding at once may both create, and one gets a 409.
    for attempt in range(3):
        try:
            database = client.create_database_if_not_exists(location.database)
            database.create_container_if_not_exists(location.events_container, PartitionKey("/instanceId"),
                                                    indexing_policy=EVENTS_INDEXING_POLICY,
                                                    unique_key_policy=EVENTS_UNIQUE_KEY_POLICY)
            database.create_container_if_not_exists(location.definitions_container, PartitionKey("/workflowId"),
                                                    indexing_policy=DEFINITIONS_INDEXING_POLICY)
            # The change feed's subscriptions (engine/feed/subscriptions_cosmos.py; infra/tenant.bicep makes it too).
            database.create_container_if_not_exists("subscriptions", PartitionKey("/pk"))
            # Its parked commands (engine/stores/parked_cosmos.py; infra/tenant.bicep makes it too).
            database.create_container_if_not_exists("parked", PartitionKey("/pk"))
            return
        except exceptions.CosmosResourceExistsError:
            if attempt == 2:
                raise


@dataclass(frozen=True, slots=True)
class Silo:
    events: ContainerProxy
    definitions: ContainerProxy


class Silos:
    """The container clients of each tenant (cached), the translation of driver errors, and lazy creation."""

    def __init__(self, client: CosmosClient, resolve: Resolver, *, auto_create: bool,
                 check_events: bool = False) -> None:
        self.client = client
        self.resolve = resolve
        self.auto_create = auto_create
        self.check_events = check_events
        self._lock = threading.Lock()
        self._creating = threading.Lock()
        self._silos: dict[str, Silo] = {}

    def get(self, tenant: str) -> Silo:
        silo = self._silos.get(tenant)
        if silo is not None:
            return silo
        location = self.resolve(tenant)
        for name in (location.database, location.events_container, location.definitions_container):
            if not isinstance(name, str) or not _COSMOS_NAME.fullmatch(name) or name != name.strip():
                raise TenantNotFound(tenant)
        if self.auto_create:
            with self._creating, self.translated(tenant):  # one creation at a time in this process
                if tenant not in self._silos:
                    ensure_tenant(self.client, location)
        database = self.client.get_database_client(location.database)
        silo = Silo(database.get_container_client(location.events_container),
                    database.get_container_client(location.definitions_container))
        if self.check_events:
            self._check_events_container(tenant, silo.events)
        with self._lock:
            return self._silos.setdefault(tenant, silo)

    def _check_events_container(self, tenant: str, container: ContainerProxy) -> None:
        """Idempotency rests on the container's unique key /triggerKey, which can only be given to a container when
        it is created: refuse to write to one without it rather than let a trigger be applied twice. One read per
        tenant and store (it also fills the SDK's cache of the container's properties, which it reads anyway)."""
        with self.translated(tenant):
            properties = container.read()
        unique = [key.get("paths") for key in (properties.get("uniqueKeyPolicy") or {}).get("uniqueKeys") or []]
        if ["/triggerKey"] not in unique:
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its events container has no unique key /triggerKey, "
                                          "so a trigger could be applied twice; create the container with it "
                                          "(infra/tenant.bicep, or ensure_tenant) and move the data over")

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._silos.pop(tenant, None)

    @contextlib.contextmanager
    def translated(self, tenant: str) -> Iterator[None]:
        """Every driver error leaves as one of ours. Callers handle the 409/412/404 that mean something at the
        call (a lost race, a recorded trigger, a missing document) before this sees them."""
        try:
            yield
        except exceptions.CosmosResourceNotFoundError as e:
            raise TenantNotFound(tenant) from e
        except AzureError as e:  # CosmosHttpResponseError (429 after retries, 5xx …), ServiceRequestError …
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: {describe(e)}") from e

    def query(self, tenant: str, container: ContainerProxy, sql: str, *, partition: str | None = None,
              **parameters: Any) -> list[dict[str, Any]]:
        params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
        with self.translated(tenant):
            if partition is None:
                return list(container.query_items(sql, parameters=params, enable_cross_partition_query=True))
            return list(container.query_items(sql, parameters=params, partition_key=partition))
