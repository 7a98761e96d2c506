"""The parked-command store on Cosmos DB: the `ParkedStore` port (engine/stores/parked.py) for Cosmos tenants.

Layout: per tenant a container `parked` in the tenant's own database (infra/tenant.bicep provisions it; a tenant's
configuration may name another with `parkedContainer`), partitioned by `/pk`, every record in the one partition
`parked` (a tenant's parked commands are few; one partition keeps listing an ordered in-partition query)::

    parked   partition /pk
    └── {id}   pk "parked"   kind "parked": the record (ParkedCommand.to_dict, the body as JSON text) and
                                            `sortKey` = "{parkedAt}|{id}"

Listing orders by the single field `sortKey` (no composite index needed) and continues after the last one's.
Reads are queries, not point reads (cosmosdb-server answers a point read of a missing document with a 500). Every
driver error leaves as `StoreUnavailable("parked store", …)`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions

from engine.domain import StoreUnavailable
from engine.stores.parked import (
    ParkedCommand,
    ParkedNotFound,
    ParkedPage,
    ParkedQuery,
    check_page,
    continuation_of,
    sort_key,
)

__all__ = ["CONTAINER", "CosmosParkedStore", "ParkedLocation"]

STORE = "parked store"
CONTAINER = "parked"
_PARTITION = "parked"


@dataclass(frozen=True, slots=True)
class ParkedLocation:
    client: Any
    database: str
    container: str = CONTAINER


class CosmosParkedStore:
    """Thread-safe; `locate(tenant)` says where the tenant's container is. `auto_create`: create the database and
    container on first use (key auth, local servers); in Azure, infra/tenant.bicep creates them."""

    def __init__(self, locate: Callable[[str], ParkedLocation], *, auto_create: bool = False) -> None:
        self.locate = locate
        self.auto_create = auto_create
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}

    def park(self, tenant: str, command: ParkedCommand) -> None:
        # The body as JSON text, as the events container keeps commits: numbers past 2^53 and lone surrogates stay
        # exact (Cosmos keeps numbers as doubles).
        doc = {**command.to_dict(), "body": json.dumps(dict(command.body), ensure_ascii=False),
               "pk": _PARTITION, "kind": "parked", "sortKey": sort_key(command)}
        with self._translated(tenant) as container:
            container.upsert_item(doc, no_response=True)

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        docs = self._query(tenant, "SELECT * FROM c WHERE c.pk = @pk AND c.id = @id", pk=_PARTITION, id=parked_id)
        if not docs:
            raise ParkedNotFound(tenant, parked_id)
        return _command(docs[0])

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        check_page(limit, continuation)
        where, params = ["c.pk = @pk", "c.sortKey > @after"], {"pk": _PARTITION, "after": continuation or ""}
        for clause, name, value in (("c.instanceId = @instance", "instance", query.instance_id),
                                    ("c.reason = @reason", "reason", query.reason),
                                    ("c.parkedAt >= @since", "since", query.since),
                                    ("c.parkedAt < @until", "until", query.until)):
            if value is not None:
                where.append(clause)
                params[name] = value
        sql = f"SELECT TOP {int(limit)} * FROM c WHERE {' AND '.join(where)} ORDER BY c.sortKey"
        items = [_command(doc) for doc in self._query(tenant, sql, **params)]
        return ParkedPage(items, continuation_of(items, limit))

    def remove(self, tenant: str, parked_id: str) -> bool:
        with self._translated(tenant) as container:
            try:
                container.delete_item(parked_id, partition_key=_PARTITION)
            except exceptions.CosmosResourceNotFoundError:
                return False
        return True

    def close(self) -> None:
        """Forget the container clients; the Cosmos clients are the caller's."""
        with self._lock:
            self._containers.clear()

    def _container(self, tenant: str) -> Any:
        found = self._containers.get(tenant)
        if found is not None:
            return found
        location = self.locate(tenant)
        if self.auto_create:
            database = location.client.create_database_if_not_exists(location.database)
            database.create_container_if_not_exists(location.container, PartitionKey("/pk"))
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
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its parked container does not exist (run "
                                          "infra/tenant.bicep for the tenant again: it adds it)") from e
        except AzureError as e:
            status = getattr(e, "status_code", None)
            first = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: {'HTTP ' + str(status) if status else type(e).__name__}"
                                          f": {first}") from e

    def _query(self, tenant: str, sql: str, **parameters: Any) -> builtins.list[dict[str, Any]]:
        params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
        with self._translated(tenant) as container:
            return builtins.list(container.query_items(sql, parameters=params, partition_key=_PARTITION))


def _command(doc: dict[str, Any]) -> ParkedCommand:
    return ParkedCommand.from_dict({**doc, "body": json.loads(doc["body"])})
