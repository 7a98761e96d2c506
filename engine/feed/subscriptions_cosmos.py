"""The subscription store on Cosmos DB: the `SubscriptionStore` port (engine/feed/subscriptions.py) for the Azure host.

Layout: per tenant a container `subscriptions` in the tenant's own database (beside `events` and `definitions`;
infra/tenant.bicep provisions it), partitioned by `/pk`::

    subscriptions   partition /pk
    ├── {name}                 pk "subscriptions"       kind "subscription": the stored state (`Subscription.to_record`)
    └── {position}:{name}      pk "delivery:{position}" kind "delivery": the commit at that feed position reached
                                                        that subscription (kept until the commit is dispatched)

Why a container of its own rather than documents in `events`: delivery bookkeeping never competes with appends
for the events container's throughput or partitions (as the SQLite store keeps a file apart from the event file),
the events container's unique key `/triggerKey` does not have to be worked around, and the tenant is still
siloed — the container lives in the tenant's database, found through the same configuration as its events.

- All subscriptions share one logical partition, so `list` is one in-partition query and `modify` is
  optimistic concurrency on one document: read it (with its etag), apply the change, replace it `If-Match` that
  etag (or create it when missing); a 412 or 409 means another writer got there first, and the change is applied
  again to what they wrote. The change function may therefore run more than once, as with any compare-and-swap.
- Delivery records are one document per (position, subscription), partitioned by position: recording is an
  idempotent upsert, `deliveries(position)` one in-partition query.
- Reads are queries, not point reads: cosmosdb-server answers a point read of a missing document with a 500.
- Every driver error leaves as `StoreUnavailable("subscription store", …)`; a missing container (a tenant
  onboarded before the container existed) says to run infra/tenant.bicep again (it is idempotent).
"""

from __future__ import annotations

import builtins
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey, exceptions

from engine.domain import StoreUnavailable
from engine.feed.subscriptions import Change, Subscription
from engine.tenants.sealing import Sealer

__all__ = ["CONTAINER", "CosmosSubscriptionStore", "SubscriptionsLocation"]

STORE = "subscription store"
CONTAINER = "subscriptions"
_SUBSCRIPTIONS = "subscriptions"  # the partition of the subscription documents
_MAX_ATTEMPTS = 200  # of one optimistic modify; each failed attempt means another writer succeeded


@dataclass(frozen=True, slots=True)
class SubscriptionsLocation:
    """Where a tenant's subscriptions are: a client of its account, its database, the container's name."""

    client: Any
    database: str
    container: str = CONTAINER


Locate = Callable[[str], SubscriptionsLocation]


def _delivery_partition(position: int) -> str:
    return f"delivery:{int(position)}"


class CosmosSubscriptionStore:
    """The `SubscriptionStore` port on Cosmos DB. Thread-safe; one per process.

    `locate(tenant)` says where the tenant's container is (the Azure host resolves it from the tenant's
    configuration, with the client of its account). With `auto_create`, the database and container are created on
    first use (key auth, local servers); in Azure, infra/tenant.bicep creates them.
    """

    def __init__(self, locate: Locate, *, auto_create: bool = False, sealer: Sealer | None = None) -> None:
        self.locate = locate
        self.auto_create = auto_create
        self.sealer = sealer  # seals the webhook secrets in the documents (None: kept as they are)
        self._lock = threading.Lock()
        self._containers: dict[str, Any] = {}

    @classmethod
    def on_client(cls, client: Any, *, database: Callable[[str], str] = lambda tenant: f"waymark-{tenant}",
                  container: str = CONTAINER, auto_create: bool = False,
                  sealer: Sealer | None = None) -> CosmosSubscriptionStore:
        """Every tenant on one account: `database(tenant)` names its database."""
        return cls(lambda tenant: SubscriptionsLocation(client, database(tenant), container), auto_create=auto_create,
                   sealer=sealer)

    # ------------------------------------------------------------------------------------------ the port

    def get(self, tenant: str, name: str) -> Subscription | None:
        found = self._read(tenant, name)
        return None if found is None else Subscription.from_record(found["subscription"], self.sealer)

    def list(self, tenant: str) -> builtins.list[Subscription]:
        docs = self._query(tenant, "SELECT * FROM c WHERE c.pk = @pk", partition=_SUBSCRIPTIONS, pk=_SUBSCRIPTIONS)
        return sorted((Subscription.from_record(doc["subscription"], self.sealer) for doc in docs),
                      key=lambda s: s.name)

    def save(self, tenant: str, subscription: Subscription) -> None:
        with self._translated(tenant) as container:
            container.upsert_item(_document(subscription, self.sealer), no_response=True)

    def delete(self, tenant: str, name: str) -> bool:
        found = self._read(tenant, name)
        deleted = False
        if found is not None:
            deleted = self._delete(tenant, name, _SUBSCRIPTIONS)
        records = self._query(tenant, "SELECT c.id, c.pk FROM c WHERE c.kind = 'delivery' AND c.name = @name",
                              name=name)
        for record in records:
            self._delete(tenant, record["id"], record["pk"])
        return deleted

    def modify(self, tenant: str, name: str, change: Change, *,
               default: Subscription | None = None) -> Subscription | None:
        for attempt in range(_MAX_ATTEMPTS):
            found = self._read(tenant, name)
            current = Subscription.from_record(found["subscription"], self.sealer) if found is not None else default
            if current is None:
                return None
            changed = change(current)
            with self._translated(tenant) as container:
                try:
                    if found is None:
                        container.create_item(_document(changed, self.sealer, name=name), no_response=True)
                    else:
                        container.replace_item(name, _document(changed, self.sealer, name=name), etag=found["_etag"],
                                               match_condition=MatchConditions.IfNotModified, no_response=True)
                    return changed
                except (exceptions.CosmosAccessConditionFailedError, exceptions.CosmosResourceExistsError,
                        exceptions.CosmosResourceNotFoundError):
                    pass  # changed, created or deleted by another writer meanwhile: apply the change to what is there
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise StoreUnavailable(STORE, f"tenant {tenant!r}: subscription {name!r} kept changing under "
                                      f"{_MAX_ATTEMPTS} attempts to modify it")

    def record_deliveries(self, tenant: str, position: int, names: Iterable[str]) -> None:
        chosen = sorted(set(names))
        if not chosen:
            return
        with self._translated(tenant) as container:
            for name in chosen:
                container.upsert_item({"id": f"{int(position)}:{name}", "pk": _delivery_partition(position),
                                       "kind": "delivery", "position": int(position), "name": name},
                                      no_response=True)

    def deliveries(self, tenant: str, position: int) -> set[str]:
        partition = _delivery_partition(position)
        docs = self._query(tenant, "SELECT c.name FROM c WHERE c.pk = @pk", partition=partition, pk=partition)
        return {doc["name"] for doc in docs}

    def forget_deliveries(self, tenant: str, positions: Sequence[int]) -> None:
        for position in sorted(set(positions)):
            partition = _delivery_partition(position)
            for doc in self._query(tenant, "SELECT c.id FROM c WHERE c.pk = @pk", partition=partition,
                                   pk=partition):
                self._delete(tenant, doc["id"], partition)

    def close(self) -> None:
        """Forget the container clients; the Cosmos clients are the caller's (one per account) and stay open."""
        with self._lock:
            self._containers.clear()

    # ------------------------------------------------------------------------------------------ inside

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
        """The tenant's container; driver errors leave as StoreUnavailable."""
        try:
            yield self._container(tenant)
        except exceptions.CosmosResourceNotFoundError as e:
            with self._lock:
                self._containers.pop(tenant, None)
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its subscriptions container does not exist (run "
                                          "infra/tenant.bicep for the tenant again: it adds it)") from e
        except AzureError as e:
            status = getattr(e, "status_code", None)
            first = (str(getattr(e, "message", None) or e).strip().splitlines() or [""])[0]
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: {'HTTP ' + str(status) if status else type(e).__name__}"
                                          f": {first}") from e

    def _query(self, tenant: str, sql: str, *, partition: str | None = None,
               **parameters: Any) -> builtins.list[dict[str, Any]]:
        params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
        with self._translated(tenant) as container:
            if partition is None:
                return builtins.list(container.query_items(sql, parameters=params,
                                                           enable_cross_partition_query=True))
            return builtins.list(container.query_items(sql, parameters=params, partition_key=partition))

    def _read(self, tenant: str, name: str) -> dict[str, Any] | None:
        docs = self._query(tenant, "SELECT * FROM c WHERE c.pk = @pk AND c.id = @id", partition=_SUBSCRIPTIONS,
                           pk=_SUBSCRIPTIONS, id=name)
        return docs[0] if docs else None

    def _delete(self, tenant: str, doc_id: str, partition: str) -> bool:
        """True when it was there (False: someone else deleted it first)."""
        with self._translated(tenant) as container:
            try:
                container.delete_item(doc_id, partition_key=partition)
            except exceptions.CosmosResourceNotFoundError:
                return False
        return True


def _document(subscription: Subscription, sealer: Sealer | None, *, name: str | None = None) -> dict[str, Any]:
    return {"id": name or subscription.name, "pk": _SUBSCRIPTIONS, "kind": "subscription",
            "subscription": subscription.to_record(sealer)}
