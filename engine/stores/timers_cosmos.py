"""The timer index on Cosmos DB: the `TimerIndex` port (engine/stores/timers.py) for the Azure host.

Layout: per tenant a container `timers` in the tenant's own database (infra/tenant.bicep provisions it; a tenant's
configuration may name another with `timersContainer`), partitioned by `/instanceId`::

    timers   partition /instanceId
    └── {sha256 of instance and firing id}   instanceId, key (the firing's trigger id), dueAt, body (JSON text)

Only timers due later than the queue can hold a message (7 days) are here, so the container stays small. Bringing
them forward is one cross-partition query per tenant, ordered by the single field `dueAt` (no composite index
needed), `TOP n`. A put is an upsert (idempotent); a remove of a missing document is no error. Every driver error
leaves as `StoreUnavailable("timer index", …)`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions

from engine.domain import StoreUnavailable
from engine.stores.timers import IndexedTimer

__all__ = ["CONTAINER", "CosmosTimerIndex", "TimersLocation"]

STORE = "timer index"
CONTAINER = "timers"


@dataclass(frozen=True, slots=True)
class TimersLocation:
    client: Any
    database: str
    container: str = CONTAINER


class CosmosTimerIndex:
    """Thread-safe; `locate(tenant)` says where the tenant's container is. `auto_create`: create the database and
    container on first use (key auth, local servers); in Azure, infra/tenant.bicep creates them."""

    def __init__(self, locate: Callable[[str], TimersLocation], *, auto_create: bool = False) -> None:
        self.locate = locate
        self.auto_create = auto_create
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}

    def put(self, tenant: str, timer: IndexedTimer) -> None:
        doc = {"id": timer.id, "instanceId": timer.instance_id, "key": timer.key, "dueAt": timer.due_at,
               "body": json.dumps(dict(timer.body), ensure_ascii=False, separators=(",", ":"))}
        with self._translated(tenant) as container:
            container.upsert_item(doc, no_response=True)

    def due(self, tenant: str, *, until: str, limit: int = 500) -> list[IndexedTimer]:
        with self._translated(tenant) as container:
            docs = list(container.query_items(
                f"SELECT TOP {int(limit)} * FROM c WHERE c.dueAt <= @until ORDER BY c.dueAt",
                parameters=[{"name": "@until", "value": until}], enable_cross_partition_query=True))
        return [IndexedTimer(doc["key"], doc["instanceId"], doc["dueAt"], json.loads(doc["body"])) for doc in docs]

    def remove(self, tenant: str, timer: IndexedTimer) -> None:
        with self._translated(tenant) as container, contextlib.suppress(exceptions.CosmosResourceNotFoundError):
            container.delete_item(timer.id, partition_key=timer.instance_id)

    def close(self) -> None:
        """Forget the container clients; the Cosmos clients are the caller's (one per account) and stay open."""
        with self._lock:
            self._containers.clear()

    def _container(self, tenant: str) -> Any:
        found = self._containers.get(tenant)
        if found is not None:
            return found
        location = self.locate(tenant)
        if self.auto_create:
            database = location.client.create_database_if_not_exists(location.database)
            database.create_container_if_not_exists(location.container, PartitionKey("/instanceId"))
        container = location.client.get_database_client(location.database).get_container_client(location.container)
        with self._lock:
            return self._containers.setdefault(tenant, container)

    @contextlib.contextmanager
    def _translated(self, tenant: str) -> Iterator[Any]:
        try:
            yield self._container(tenant)
        except exceptions.CosmosResourceNotFoundError as e:
            with self._lock:
                self._containers.pop(tenant, None)
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its timers container does not exist (run "
                                          "infra/tenant.bicep for the tenant again: it adds it)") from e
        except AzureError as e:
            status = getattr(e, "status_code", None)
            first = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: {'HTTP ' + str(status) if status else type(e).__name__}"
                                          f": {first}") from e
