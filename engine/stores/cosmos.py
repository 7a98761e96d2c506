"""The Cosmos DB event and definition stores: per tenant a database, with containers `events` and `definitions`.

Layout (docs/cosmos.md tells the whole story and the costs)::

    database  waymark-{tenant}              (or what the tenant's configuration names: `resolve(tenant)`)
    ├── events       partition /instanceId, unique key /triggerKey (unique per partition = per instance)
    │   ├── {instanceId}:{firstSequence:010d}   kind "commit": the events of one commit, the instance after it,
    │   │                                       its feed position, `dispatched` and `indexed` flags
    │   ├── {instanceId}:index                  kind "index": the instance as of its newest *indexed* commit
    │   ├── ~feed:position  (partition ~feed)   kind "counter": the tenant's last feed position
    │   ├── ~feed:outbox    (partition ~feed)   kind "outbox": which commits are dispatched (cosmos_outbox.py)
    │   └── ~gap:{position:012d} (partition ~feed) kind "gap": a position that will never hold a commit
    └── definitions  partition /workflowId
        └── {workflowId}:{version:08d}          kind "definition": one document per version, never overwritten

**Commits.** A commit is one document, *created* (never upserted): its id is derived from its first sequence, so
two writers deciding from the same version race for the same id and the loser gets a 409, which is
`ConcurrencyConflict`. Its `triggerKey` (`t:{trigger id}`, or `s:{sequence}` for an administrative commit) is a
unique key of the container, and Cosmos enforces unique keys per logical partition, i.e. per instance: a trigger id
recorded twice on an instance is a 409 too, in the same single-document write, so idempotency holds without a
race window. A 409 is told apart (trigger recorded → `DuplicateTrigger`, else `ConcurrencyConflict`) by one
query, only on that path. Transactional batches are not used (cosmosdb-server's are not atomic).

A create of `{instanceId}:{n+1}` only proves that no commit starts at n+1; it proves the stream is *at* n only
if the stream is known to have reached n. So an append checks `expected_version` against the head this store
last read or wrote (or reads the head: one query) before creating.

**Loading.** The commit document carries the instance after it, as JSON text (so numbers beyond 2**53 and lone
surrogates round-trip exactly, and Cosmos does not index it): a load is one `TOP 1 … ORDER BY firstSequence DESC`
query in the instance's partition, whatever the length of its history. In the processor's find-then-decide
(`base.load_follows`), an instance whose head this store holds costs no read at all: `find_trigger` answers a
trigger recorded by this store from memory and any other as not recorded, and the `load` that follows returns the
head held. Were the trigger recorded elsewhere, or the head moved on by another writer, the append's create collides
(409 on the commit's id or its trigger key) and the processor is told which (`DuplicateTrigger`: the first result is
answered; `ConcurrencyConflict`: it reloads and decides again) — a trigger is never applied twice, though one
decided on a stale head has had its actions run (as when two workers race for one message). Without a head held,
`find_trigger` queries "the commit of this trigger, or any commit after the head I know" and hands the head it
read to the `load`. So the steady state of a trigger is the append alone: the position and the create, 2 requests
(and 1 + 1/n in a worker's group commit of n, `append_many`, whose positions are taken in one request).

**Feed positions.** Cosmos has no global sequence: a per-tenant counter document is incremented with a patch
(`incr`, atomic on the server) before the create — one request per commit and one hot document per tenant. A
position whose create lost a race is kept for the retry that follows (this store's next append within
`SPARE_SECONDS`); one known never to be used (the trigger was recorded already, a kept one expired, the store
closed) gets a `gap` marker. A position lost otherwise (a crash between the increment and the create, a create
whose outcome is unknown) is a gap without a marker. `read_feed` returns commits in position order but stops
before an unmarked gap younger than `gap_grace` seconds (a commit may still be on its way there) and steps over
older ones: every commit is returned exactly once, in a stable order, at the cost of a pull feed that can wait up
to `gap_grace` behind a lost position.

**The instance index** (for `list_instances` and `interested`) is one `index` document per instance, a projection
written *after* the commit: by `mark_dispatched` (the outbox marks every commit, in batches) or by `repair_index`
(for a sweeper), each a conditional patch that only moves it forward, and only then is the commit marked: in the
tenant's outbox document (`mark_dispatched`, one request for the whole batch, see engine/stores/cosmos_outbox.py)
or on the commit itself (`indexed`, by the repair). Commits neither marked nor indexed (just appended, or a crash
between commit and index) are merged in by every listing from a query made before the index query, so a listing
reflects every commit made before it started (read-your-writes); an index left behind only costs listings that
query's size until it is repaired.

Errors are translated at the edge: 409/412 become `ConcurrencyConflict`/`DuplicateTrigger` where they mean that,
a 404 on a tenant's database or container `TenantNotFound`, and everything else (429 after the SDK's throttling
retries, 5xx, timeouts, connection refused) `StoreUnavailable`, which keeps the command on its queue.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_from_bytes

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient, PartitionKey, exceptions
from azure.cosmos.container import ContainerProxy

from engine.domain import (
    Commit,
    ConcurrencyConflict,
    DefinitionChanged,
    DuplicateTrigger,
    Event,
    Instance,
    InstanceNotFound,
    StoreUnavailable,
    TenantNotFound,
    WorkflowNotFound,
    timestamp,
)
from engine.drivers.cosmos import CosmosLocation, Resolver, default_location, describe
from engine.stores import cosmos_outbox as outbox
from engine.stores.base import Page, PendingCommit, load_expected
from engine.stores.checks import (
    check_commit,
    check_limit,
    decode_continuation,
    encode_continuation,
    workflow_id_of,
)
from engine.stores.cosmos_outbox import OutboxState

__all__ = [
    "EVENTS_INDEXING_POLICY",
    "EVENTS_UNIQUE_KEY_POLICY",
    "CosmosDefinitionStore",
    "CosmosEventStore",
    "ensure_tenant",
]

STORE = "cosmos"
SPARE_SECONDS = 5.0  # how long a position whose create lost its race may still be used
CREATE_TIMEOUT_SECONDS = 10.0  # absolute timeout of a commit's create: bounds when a position can still appear
GAP_GRACE_SECONDS = 30.0  # > SPARE_SECONDS + CREATE_TIMEOUT_SECONDS + clock skew between writers and readers
HANDOFF_SECONDS = 1.0  # a head read by find_trigger serves the load that follows it for this long at most

_FEED_PARTITION = "~feed"
_COUNTER_ID = "~feed:position"

# Commit documents keep their events and instance as JSON text: never indexed, and exact (see the docstring).
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

_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # ASCII: exact round trips
_decode = json.loads
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_COSMOS_NAME = re.compile(r"[^/\\?#\x00-\x1f\x7f]{1,255}")


# ---------------------------------------------------------------------------------------------- a tenant's containers

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
class _Silo:
    events: ContainerProxy
    definitions: ContainerProxy


class _Silos:
    """The container clients of each tenant (cached), the translation of driver errors, and lazy creation."""

    def __init__(self, client: CosmosClient, resolve: Resolver, *, auto_create: bool,
                 check_events: bool = False) -> None:
        self.client = client
        self.resolve = resolve
        self.auto_create = auto_create
        self.check_events = check_events
        self._lock = threading.Lock()
        self._creating = threading.Lock()
        self._silos: dict[str, _Silo] = {}

    def get(self, tenant: str) -> _Silo:
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
        silo = _Silo(database.get_container_client(location.events_container),
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


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _id_part(value: str) -> str:
    """A string as part of a Cosmos id (which may not hold / \\ ? #): kept when plain, else percent-encoded, else
    (too long) hashed. Injective on plain and encoded forms: '%' and '~' never occur in a plain one."""
    if _SAFE_ID.fullmatch(value):
        return value
    encoded = quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="._:-").replace("~", "%7E")
    if len(encoded) <= 200:
        return encoded
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _commit_id(instance_id: str, first_sequence: int) -> str:
    return f"{_id_part(instance_id)}:{first_sequence:010d}"


def _index_id(instance_id: str) -> str:
    return f"{_id_part(instance_id)}:index"


def _trigger_key(trigger_id: str | None, first_sequence: int) -> str:
    return f"t:{trigger_id}" if trigger_id is not None else f"s:{first_sequence}"


def _now() -> str:
    return timestamp(datetime.now(UTC))


def _age_seconds(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - moment).total_seconds()


def _instance_of(doc: Mapping[str, Any]) -> Instance:
    return Instance.from_dict(_decode(doc["instance"]))


def _commit_of(doc: Mapping[str, Any], outbox: OutboxState | None = None) -> Commit:
    events = tuple(Event.from_dict(event) for event in _decode(doc["events"]))
    position, flagged = int(doc["position"]), bool(doc.get("dispatched"))
    return Commit(doc["instanceId"], events, _instance_of(doc), position=position,
                  dispatched=flagged if outbox is None else outbox.dispatched(position, flagged))


# ---------------------------------------------------------------------------------------------- event store

@dataclass(frozen=True, slots=True)
class _Located:
    """Where a commit is, and the instance after it: what marking and indexing it need."""

    position: int
    instance_id: str
    doc_id: str
    instance: Instance


class CosmosEventStore:
    """The event store on Cosmos DB. Thread-safe; share one per process (and one `CosmosClient` per account).

    `resolve` names each tenant's database and containers (default `waymark-{tenant}`). With `auto_create`, a
    tenant's database and containers are created on its first use here (key auth, local servers); without it a
    tenant whose database is missing is `TenantNotFound` (`ping`: `StoreUnavailable`).
    """

    def __init__(self, client: CosmosClient, *, resolve: Resolver = default_location, auto_create: bool = False,
                 cache_size: int = 4096, gap_grace: float = GAP_GRACE_SECONDS) -> None:
        self._silos = _Silos(client, resolve, auto_create=auto_create, check_events=True)
        self.client = client
        self.gap_grace = gap_grace
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._heads: OrderedDict[tuple[str, str], Instance] = OrderedDict()
        self._located: OrderedDict[tuple[str, int], _Located] = OrderedDict()
        self._recorded: OrderedDict[tuple[str, str, str], Commit] = OrderedDict()  # triggers recorded here
        self._spares: dict[str, list[tuple[int, float]]] = {}
        self._local = threading.local()

    def close(self) -> None:
        """Mark the feed positions kept for a retry that never came as gaps (best effort). The client is the
        caller's (one per account, shared): it stays open."""
        with self._lock:
            spares, self._spares = self._spares, {}
        for tenant, kept in spares.items():
            with contextlib.suppress(Exception):
                self._abandon(tenant, self._silos.get(tenant), [position for position, _ in kept])

    def __enter__(self) -> CosmosEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant's database and containers if missing (idempotent)."""
        with self._silos.translated(tenant):
            ensure_tenant(self._silos.client, self._silos.resolve(tenant))

    def forget(self, tenant: str) -> None:
        """Drop what is cached about a tenant (its containers, heads), e.g. after its configuration changed."""
        self._silos.forget(tenant)
        with self._lock:
            for key in [key for key in self._heads if key[0] == tenant]:
                del self._heads[key]
            for recorded in [recorded for recorded in self._recorded if recorded[0] == tenant]:
                del self._recorded[recorded]
            self._spares.pop(tenant, None)

    # ------------------------------------------------------------------------------------------ writing

    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        events = tuple(events)
        check_commit(instance_id, expected_version, events, state)
        self._local.handoff = None
        silo = self._silos.get(tenant)
        ((position, taken_at),) = self._take_positions(tenant, silo, 1)
        return self._create(tenant, silo, PendingCommit(instance_id, expected_version, events, state), position,
                            taken_at)

    def append_many(self, tenant: str, commits: Sequence[PendingCommit]) -> list[Commit | Exception]:
        """The worker's group commit on Cosmos: the feed positions of the whole batch in one request (an `incr` by
        the number of commits), then one create per commit — each still the atomic unit, whole or absent on its own.
        A commit refused (ConcurrencyConflict, DuplicateTrigger) is answered in its place, and so are the later
        commits of its instance, decided on it; their positions are marked as gaps at once. A storage failure raises
        StoreUnavailable: the commits created before it stay (a retry finds their triggers recorded); the positions
        not used are marked as gaps."""
        pending = [PendingCommit(c.instance_id, c.expected_version, tuple(c.events), c.state) for c in commits]
        for commit in pending:
            check_commit(commit.instance_id, commit.expected_version, tuple(commit.events), commit.state)
        if not pending:
            return []
        self._local.handoff = None
        silo = self._silos.get(tenant)
        positions = self._take_positions(tenant, silo, len(pending))
        results: list[Commit | Exception] = []
        refused: set[str] = set()
        for index, (commit, (position, taken_at)) in enumerate(zip(pending, positions, strict=True)):
            if commit.instance_id in refused:
                self._abandon(tenant, silo, [position])
                results.append(ConcurrencyConflict(tenant, commit.instance_id, commit.expected_version, None,
                                                   detail="follows a refused commit of its batch"))
                continue
            try:
                results.append(self._create(tenant, silo, commit, position, taken_at, spare=False))
            except (ConcurrencyConflict, DuplicateTrigger) as e:
                refused.add(commit.instance_id)
                results.append(e)
            except BaseException:
                self._abandon(tenant, silo, [p for p, _ in positions[index + 1:]])
                raise
        return results

    def _create(self, tenant: str, silo: _Silo, pending: PendingCommit, position: int, taken_at: float, *,
                spare: bool = True) -> Commit:
        """Create the commit's document at `position` (see append). The position of a commit refused for its version
        is kept for the caller's retry (`spare`), or marked as a gap at once (in a batch, where later positions are
        used already: a reader of the feed must not wait at it)."""

        def release() -> None:
            if spare:
                self._give_back(tenant, position, taken_at)
            else:
                self._abandon(tenant, silo, [position])

        instance_id, expected_version, state = pending.instance_id, pending.expected_version, pending.state
        events = tuple(pending.events)
        trigger_id = events[0].trigger_id
        key = (tenant, instance_id)
        if expected_version > 0 and self._head(key) != expected_version:
            # Creating `{id}:{n+1}` proves the stream is at n only if it has reached n: read the head.
            try:
                current = self._query_head(tenant, silo, instance_id)
            except BaseException:
                release()
                raise
            version = current.version if current is not None else 0
            if version != expected_version:
                release()
                raise self._refusal(tenant, silo, instance_id, expected_version, trigger_id, version)
        doc_id = _commit_id(instance_id, expected_version + 1)
        doc = {
            "id": doc_id,
            "kind": "commit",
            "instanceId": instance_id,
            "firstSequence": events[0].sequence,
            "lastSequence": events[-1].sequence,
            "triggerId": trigger_id,
            "triggerKey": _trigger_key(trigger_id, events[0].sequence),
            "position": position,
            "dispatched": False,
            "indexed": False,
            "at": events[0].at,
            "committedAt": _now(),
            "workflowId": state.workflow_id,
            "events": _encode([event.to_dict() for event in events]),
            "instance": _encode(state.to_dict()),
        }
        try:
            silo.events.create_item(doc, no_response=True, timeout=CREATE_TIMEOUT_SECONDS)
        except exceptions.CosmosResourceExistsError as e:
            # Nothing was written. After a lost race the caller decides again and appends at once: the position is
            # kept for that. A recorded trigger is not appended again: the position is marked as a gap at once.
            self._drop_head(key)
            refusal = self._refusal(tenant, silo, instance_id, expected_version, trigger_id, None)
            if isinstance(refusal, DuplicateTrigger):
                self._abandon(tenant, silo, [position])
            else:
                release()
            raise refusal from e
        except exceptions.CosmosResourceNotFoundError as e:
            raise TenantNotFound(tenant) from e
        except AzureError as e:  # the outcome is unknown: the position is never used again (a gap)
            self._drop_head(key)
            raise StoreUnavailable(STORE, f"tenant {tenant!r}, instance {instance_id!r}: {describe(e)}") from e
        commit = Commit(instance_id, events, state, position=position)
        self._remember_head(key, state)
        self._remember_location(tenant, _Located(position, instance_id, doc_id, state))
        if trigger_id is not None:
            self._remember_recorded(tenant, commit)
        return commit

    def _refusal(self, tenant: str, silo: _Silo, instance_id: str, expected_version: int, trigger_id: str | None,
                 actual: int | None) -> Exception:
        """Why a commit was not written: its trigger is recorded already (whatever the version), or the stream
        is at another version."""
        if trigger_id is not None and self._trigger_doc(tenant, silo, instance_id, trigger_id) is not None:
            return DuplicateTrigger(tenant, instance_id, trigger_id)
        return ConcurrencyConflict(tenant, instance_id, expected_version, actual)

    def _take_positions(self, tenant: str, silo: _Silo, count: int) -> list[tuple[int, float]]:
        """`count` feed positions of the tenant, in order, each with when it was taken from the counter: spare ones
        first (taken by an append that lost its race, less than SPARE_SECONDS ago), then the counter's next ones,
        all in one request (`incr` by the number still wanted)."""
        now = time.monotonic()
        expired: list[int] = []
        taken: list[tuple[int, float]] = []
        with self._lock:
            spares = self._spares.get(tenant)
            while spares and len(taken) < count:
                position, taken_at = spares.pop(0)
                if now - taken_at < SPARE_SECONDS:
                    taken.append((position, taken_at))
                else:
                    expired.append(position)
        self._abandon(tenant, silo, expired)
        wanted = count - len(taken)
        if not wanted:
            return taken
        operations = [{"op": "incr", "path": "/next", "value": wanted}]
        try:
            with self._silos.translated(tenant):
                try:
                    counter = silo.events.patch_item(_COUNTER_ID, _FEED_PARTITION, operations)
                except exceptions.CosmosResourceNotFoundError:
                    # The first commit of the tenant (or a container provisioned by infra/tenant.bicep).
                    with contextlib.suppress(exceptions.CosmosResourceExistsError):
                        silo.events.create_item({"id": _COUNTER_ID, "instanceId": _FEED_PARTITION,
                                                 "kind": "counter", "triggerKey": "~position", "next": 0})
                    counter = silo.events.patch_item(_COUNTER_ID, _FEED_PARTITION, operations)
        except BaseException:
            for position, taken_at in taken:
                self._give_back(tenant, position, taken_at)
            raise
        last = int(counter["next"])
        return sorted(taken) + [(position, now) for position in range(last - wanted + 1, last + 1)]

    def _abandon(self, tenant: str, silo: _Silo, positions: Sequence[int]) -> None:
        """Mark positions that will never hold a commit, so `read_feed` need not wait `gap_grace` at them. Best
        effort: a marker not written only makes readers wait at that gap."""
        for position in positions:
            with contextlib.suppress(AzureError):
                silo.events.create_item({"id": f"~gap:{position:012d}", "instanceId": _FEED_PARTITION,
                                         "kind": "gap", "triggerKey": f"~gap:{position}", "position": position,
                                         "committedAt": _now()}, no_response=True)

    def _give_back(self, tenant: str, position: int, taken_at: float) -> None:
        with self._lock:
            spares = self._spares.setdefault(tenant, [])
            spares.append((position, taken_at))
            spares.sort()

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        """Index the instances of these commits (newest state per instance), then mark the commits dispatched in the
        tenant's outbox document (one request for the batch: see engine/stores/cosmos_outbox.py). Unknown
        positions are ignored."""
        if not positions:
            return
        self._local.handoff = None
        silo = self._silos.get(tenant)
        wanted = sorted(set(positions))
        located: list[_Located] = []
        unknown: list[int] = []
        with self._lock:
            for position in wanted:
                found = self._located.get((tenant, position))
                if found is None:
                    unknown.append(position)
                else:
                    located.append(found)
        if unknown:
            located += [self._located_of(doc) for doc in self._silos.query(
                tenant, silo.events, "SELECT c.id, c.instanceId, c.position, c.instance FROM c"
                " WHERE c.kind = 'commit' AND ARRAY_CONTAINS(@positions, c.position)", positions=unknown)]
        self._index(tenant, silo, located)  # first: a commit marked dispatched is indexed
        with self._silos.translated(tenant):
            outbox.mark(silo.events, [entry.position for entry in located])
        with self._lock:
            for entry in located:
                self._located.pop((tenant, entry.position), None)

    def repair_index(self, tenant: str, *, limit: int = 1000) -> int:
        """The sweeper's pass over a tenant: fold the outbox marks into its watermark (`compact`), then bring the
        index up to every commit neither indexed nor marked (a crash between commit and index, commits the outbox
        cannot mark because their publishing keeps failing, or has not marked yet), at most `limit` of them;
        returns how many were indexed."""
        self._local.handoff = None
        silo = self._silos.get(tenant)
        state = self.compact(tenant)
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} c.id, c.instanceId, c.position,"
                                 " c.instance FROM c WHERE c.kind = 'commit' AND c.indexed = false"
                                 " AND c.position > @through AND NOT ARRAY_CONTAINS(@marked, c.position)"
                                 " ORDER BY c.position", through=state.through, marked=state.marked_list)
        located = [self._located_of(doc) for doc in docs]
        self._index(tenant, silo, located)
        for entry in located:
            self._patch_commit(tenant, silo, entry.doc_id, entry.instance_id,
                               [{"op": "set", "path": "/indexed", "value": True}])
        return len(located)

    def compact(self, tenant: str, *, attempts: int = 3) -> OutboxState:
        """Fold the tenant's outbox marks into its watermark (see engine/stores/cosmos_outbox.py); the state after.
        A concurrent mark or compaction makes the replace fail on the etag: read again, up to `attempts` times."""
        silo = self._silos.get(tenant)
        state = self._outbox(tenant, silo)
        for _ in range(attempts):
            if not state.exists or not state.marked:
                return state
            top = max(state.marked)
            slots = {slot.position: slot for slot in (self._slot(doc) for doc in self._silos.query(
                tenant, silo.events, "SELECT c.id, c.instanceId, c.position, c.kind, c.dispatched, c.committedAt"
                " FROM c WHERE (c.kind = 'commit' OR c.kind = 'gap') AND c.position > @through"
                " AND c.position <= @top ORDER BY c.position", through=state.through, top=top))}
            through = outbox.advance(state, list(slots.values()))
            flag = outbox.overflow(state, through, slots)
            for slot in flag:
                self._patch_commit(tenant, silo, slot.doc_id, slot.instance_id,
                                   [{"op": "set", "path": "/dispatched", "value": True},
                                    {"op": "set", "path": "/indexed", "value": True}])
            if through == state.through and not flag:
                return state
            body = outbox.compacted(state, through, [slot.position for slot in flag])
            try:
                with self._silos.translated(tenant):
                    silo.events.replace_item(outbox.OUTBOX_ID, body, etag=state.etag,
                                             match_condition=MatchConditions.IfNotModified, no_response=True)
                return outbox.OutboxState(through, frozenset(body["marks"]["compacted"]))
            except exceptions.CosmosAccessConditionFailedError:
                state = self._outbox(tenant, silo)
        return state

    def _slot(self, doc: Mapping[str, Any]) -> outbox.Slot:
        return outbox.Slot(int(doc["position"]), str(doc["kind"]), bool(doc.get("dispatched")),
                           _age_seconds(doc.get("committedAt")) >= self.gap_grace, str(doc.get("id") or ""),
                           str(doc.get("instanceId") or ""))

    def _outbox(self, tenant: str, silo: _Silo) -> OutboxState:
        return outbox.read_state(lambda sql, **options: self._silos.query(tenant, silo.events, sql, **options))

    @staticmethod
    def _located_of(doc: Mapping[str, Any]) -> _Located:
        return _Located(int(doc["position"]), doc["instanceId"], doc["id"], _instance_of(doc))

    def _patch_commit(self, tenant: str, silo: _Silo, doc_id: str, instance_id: str,
                      operations: list[dict[str, Any]]) -> None:
        with self._silos.translated(tenant), contextlib.suppress(exceptions.CosmosResourceNotFoundError):
            silo.events.patch_item(doc_id, instance_id, operations, no_response=True)

    def _index(self, tenant: str, silo: _Silo, located: Sequence[_Located]) -> None:
        """Move each instance's index document forward to the newest of these states (never backward: the patch
        only applies while the document is older)."""
        newest: dict[str, Instance] = {}
        for entry in located:
            known = newest.get(entry.instance_id)
            if known is None or entry.instance.version > known.version:
                newest[entry.instance_id] = entry.instance
        for instance_id, instance in newest.items():
            self._write_index(tenant, silo, instance_id, instance)

    def _write_index(self, tenant: str, silo: _Silo, instance_id: str, instance: Instance) -> None:
        fields = {"instance": _encode(instance.to_dict()), "version": instance.version,
                  "status": str(instance.status), "state": instance.state, "workflowId": instance.workflow_id,
                  "interests": list(instance.interests)}
        operations = [{"op": "set", "path": f"/{name}", "value": value} for name, value in fields.items()]
        predicate = f"from c where c.version < {int(instance.version)}"
        index_id = _index_id(instance_id)
        with self._silos.translated(tenant):
            for _ in range(3):
                try:
                    silo.events.patch_item(index_id, instance_id, operations, filter_predicate=predicate,
                                           no_response=True)
                    return
                except exceptions.CosmosAccessConditionFailedError:
                    return  # the index is at this version or newer already
                except exceptions.CosmosResourceNotFoundError:
                    pass
                try:
                    silo.events.create_item({"id": index_id, "kind": "index", "instanceId": instance_id,
                                             "triggerKey": "~index", **fields}, no_response=True)
                    return
                except exceptions.CosmosResourceExistsError:
                    continue  # created meanwhile by another indexer: patch it

    # ------------------------------------------------------------------------------------------ reading

    def load(self, tenant: str, instance_id: str) -> Instance:
        handoff = getattr(self._local, "handoff", None)
        self._local.handoff = None
        if handoff is not None:
            handed_tenant, handed_id, instance, read_at = handoff
            if ((handed_tenant, handed_id) == (tenant, instance_id) and load_expected()
                    and time.monotonic() - read_at < HANDOFF_SECONDS):
                return instance  # the head find_trigger has just read (see the module docstring)
        silo = self._silos.get(tenant)
        current = self._query_head(tenant, silo, instance_id)
        if current is None:
            raise InstanceNotFound(tenant, instance_id)
        return current

    def _query_head(self, tenant: str, silo: _Silo, instance_id: str) -> Instance | None:
        docs = self._silos.query(tenant, silo.events, "SELECT TOP 1 c.instance FROM c WHERE c.instanceId = @id"
                                 " AND c.kind = 'commit' ORDER BY c.firstSequence DESC",
                                 partition=instance_id, id=instance_id)
        if not docs:
            self._drop_head((tenant, instance_id))
            return None
        instance = _instance_of(docs[0])
        self._remember_head((tenant, instance_id), instance)
        return instance

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        self._local.handoff = None
        if limit is not None and limit <= 0:
            return []
        after = max(after, 0)
        silo = self._silos.get(tenant)
        # Every commit holds at least one event past `after`, so `limit` commits hold at least `limit` events.
        top = "" if limit is None else f"TOP {int(limit)} "
        docs = self._silos.query(tenant, silo.events, f"SELECT {top}c.events FROM c WHERE c.instanceId = @id"
                                 " AND c.kind = 'commit' AND c.lastSequence > @after ORDER BY c.firstSequence",
                                 partition=instance_id, id=instance_id, after=after)
        events = [Event.from_dict(event) for doc in docs for event in _decode(doc["events"])
                  if event["sequence"] > after]
        return events if limit is None else events[:limit]

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        self._local.handoff = None
        key = (tenant, instance_id)
        if load_expected():
            # The processor's find-then-decide (see the module docstring): a trigger recorded here is answered from
            # memory, and with a head in memory nothing is read — were the trigger recorded elsewhere, or the head
            # stale, the append's create collides (409) and says so.
            with self._lock:
                recorded = self._recorded.get((tenant, instance_id, trigger_id))
            if recorded is not None:
                return recorded
            head = self._heads_get(key)
            if head is not None:
                self._local.handoff = (tenant, instance_id, head, time.monotonic())
                return None
        silo = self._silos.get(tenant)
        known = self._head(key)
        trigger_key = _trigger_key(trigger_id, 0)
        if known is None:
            found = self._trigger_doc(tenant, silo, instance_id, trigger_id)
            return None if found is None else self._found(tenant, silo, found)
        # One request: the trigger's commit, and any commit after the head this store knows, which makes the
        # `load` that follows free.
        docs = self._silos.query(tenant, silo.events, "SELECT * FROM c WHERE c.instanceId = @id AND c.kind = 'commit'"
                                 " AND (c.triggerKey = @key OR c.firstSequence > @version)",
                                 partition=instance_id, id=instance_id, key=trigger_key, version=known)
        newer = [doc for doc in docs if doc["firstSequence"] > known]
        head = self._heads_get(key)
        if newer:
            head = _instance_of(max(newer, key=lambda doc: int(doc["firstSequence"])))
            self._remember_head(key, head)
        if head is not None and load_expected():
            self._local.handoff = (tenant, instance_id, head, time.monotonic())
        for doc in docs:
            if doc.get("triggerKey") == trigger_key:
                return self._found(tenant, silo, doc)
        return None

    def _found(self, tenant: str, silo: _Silo, doc: Mapping[str, Any]) -> Commit:
        """A commit document found by its trigger, with whether it is dispatched (from the tenant's outbox)."""
        return _commit_of(doc, self._outbox(tenant, silo))

    def _trigger_doc(self, tenant: str, silo: _Silo, instance_id: str, trigger_id: str) -> dict[str, Any] | None:
        docs = self._silos.query(tenant, silo.events, "SELECT * FROM c WHERE c.instanceId = @id"
                                 " AND c.kind = 'commit' AND c.triggerKey = @key",
                                 partition=instance_id, id=instance_id, key=_trigger_key(trigger_id, 0))
        return docs[0] if docs else None

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        check_limit(limit)
        self._local.handoff = None
        after = decode_continuation(continuation)
        silo = self._silos.get(tenant)
        filters = {"status": status, "workflowId": workflow_id, "state": state}
        where = ["c.kind = 'index'"]
        parameters: dict[str, Any] = {}
        for field_name, value in filters.items():
            if value is not None:
                where.append(f"c.{field_name} = @{field_name}")
                parameters[field_name] = str(value)
        if after is not None:
            where.append("c.instanceId > @after")
            parameters["after"] = after
        pending = self._pending(tenant, silo)  # before the index: see _pending
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit) + 1} c.instanceId, c.instance FROM c"
                                 f" WHERE {' AND '.join(where)} ORDER BY c.instanceId", **parameters)
        settled = self._settle(tenant, silo, pending)
        # Index rows are complete up to the last one fetched; instances with commits not indexed yet are taken
        # at their current state, in or out of the page.
        bound = None if len(docs) <= limit else docs[-1]["instanceId"]
        candidates = {doc["instanceId"]: _instance_of(doc) for doc in docs}
        for instance_id, instance in settled.items():
            if (after is None or instance_id > after) and (bound is None or instance_id <= bound):
                candidates[instance_id] = instance

        def matches(instance: Instance) -> bool:
            return ((status is None or str(instance.status) == status)
                    and (workflow_id is None or instance.workflow_id == workflow_id)
                    and (state is None or instance.state == state))

        matching = sorted((i for i in candidates.values() if matches(i)), key=lambda instance: instance.id)
        items = matching[:limit]
        if len(matching) > limit:
            return Page(items, encode_continuation(items[-1].id))
        return Page(items, None if bound is None else encode_continuation(bound))

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        if not subjects:
            return []
        self._local.handoff = None
        silo = self._silos.get(tenant)
        wanted = list(dict.fromkeys(subjects))
        pending = self._pending(tenant, silo)  # before the index: see _pending
        docs = self._silos.query(tenant, silo.events, "SELECT c.instanceId FROM c WHERE c.kind = 'index' AND"
                                 " EXISTS(SELECT VALUE s FROM s IN c.interests WHERE ARRAY_CONTAINS(@subjects, s))",
                                 subjects=wanted)
        found = {doc["instanceId"] for doc in docs} - pending.keys()
        subject_set = set(wanted)
        found.update(instance_id for instance_id, instance in self._settle(tenant, silo, pending).items()
                     if subject_set.intersection(instance.interests))
        return sorted(found)

    def _pending(self, tenant: str, silo: _Silo) -> dict[str, Instance]:
        """The newest state of every instance with commits not indexed yet.

        Read *before* the index: a commit not indexed then is in here, and one indexed then is in the index from
        then on (the index only moves forward), so a listing sees every commit made before it started, even while
        the outbox is indexing."""
        state = self._outbox(tenant, silo)  # a commit marked dispatched there is indexed
        docs = self._silos.query(tenant, silo.events, "SELECT c.instanceId, c.lastSequence, c.instance FROM c"
                                 " WHERE c.kind = 'commit' AND c.indexed = false AND c.position > @through"
                                 " AND NOT ARRAY_CONTAINS(@marked, c.position)",
                                 through=state.through, marked=state.marked_list)
        newest: dict[str, dict[str, Any]] = {}
        for doc in docs:
            known = newest.get(doc["instanceId"])
            if known is None or doc["lastSequence"] > known["lastSequence"]:
                newest[doc["instanceId"]] = doc
        return {instance_id: _instance_of(doc) for instance_id, doc in newest.items()}

    def _settle(self, tenant: str, silo: _Silo, pending: Mapping[str, Instance]) -> dict[str, Instance]:
        """The current state of each pending instance: its pending state, or its index document if that has
        moved past it since (read after the listing's index query)."""
        if not pending:
            return {}
        settled = dict(pending)
        for doc in self._silos.query(tenant, silo.events, "SELECT c.instanceId, c.instance FROM c WHERE c.kind ="
                                     " 'index' AND ARRAY_CONTAINS(@ids, c.instanceId)", ids=sorted(pending)):
            indexed = _instance_of(doc)
            if indexed.version > settled[doc["instanceId"]].version:
                settled[doc["instanceId"]] = indexed
        return settled

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        """Commits after `after` in position order, up to the first gap younger than `gap_grace` (a position
        taken by a commit that may still be on its way): every commit is returned once, in a stable order."""
        if limit <= 0:
            return []
        self._local.handoff = None
        silo = self._silos.get(tenant)
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} * FROM c WHERE (c.kind = 'commit'"
                                 " OR c.kind = 'gap') AND c.position > @after ORDER BY c.position",
                                 after=max(after, 0))
        commits: list[Commit] = []
        previous = max(after, 0)
        state = self._outbox(tenant, silo) if docs else None
        for doc in docs:
            position = int(doc["position"])
            if position != previous + 1 and _age_seconds(doc.get("committedAt")) < self.gap_grace:
                break
            if doc["kind"] == "commit":
                commits.append(_commit_of(doc, state))
            previous = position
        return commits

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        if limit <= 0:
            return []
        self._local.handoff = None
        silo = self._silos.get(tenant)
        state = self._outbox(tenant, silo)
        before = "" if committed_before is None else " AND c.at < @before"
        parameters = {} if committed_before is None else {"before": committed_before}
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} * FROM c WHERE c.kind = 'commit'"
                                 " AND c.dispatched = false AND c.position > @through"
                                 f" AND NOT ARRAY_CONTAINS(@marked, c.position){before} ORDER BY c.position",
                                 through=state.through, marked=state.marked_list, **parameters)
        commits = [_commit_of(doc) for doc in docs]
        for doc, commit in zip(docs, commits, strict=True):
            self._remember_location(tenant, _Located(int(doc["position"]), commit.instance_id, doc["id"],
                                                     commit.state))
        return commits

    def ping(self, tenant: str) -> None:
        """One read of the tenant's events container (after the first call, whose check reads it anyway)."""
        self._local.handoff = None
        try:
            silo = self._silos.get(tenant)
            with self._silos.translated(tenant):
                silo.events.read()
        except TenantNotFound as e:
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its database or events container does not exist "
                                          "(onboard the tenant)") from e

    # ------------------------------------------------------------------------------------------ caches

    def _head(self, key: tuple[str, str]) -> int | None:
        instance = self._heads_get(key)
        return None if instance is None else instance.version

    def _heads_get(self, key: tuple[str, str]) -> Instance | None:
        with self._lock:
            return self._heads.get(key)

    def _remember_head(self, key: tuple[str, str], instance: Instance) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            known = self._heads.get(key)
            if known is not None and known.version > instance.version:
                return
            self._heads[key] = instance
            self._heads.move_to_end(key)
            while len(self._heads) > self._cache_size:
                self._heads.popitem(last=False)

    def _drop_head(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._heads.pop(key, None)

    def _remember_recorded(self, tenant: str, commit: Commit) -> None:
        trigger_id = commit.events[0].trigger_id
        if self._cache_size <= 0 or trigger_id is None:
            return
        with self._lock:
            self._recorded[(tenant, commit.instance_id, trigger_id)] = commit
            while len(self._recorded) > self._cache_size:
                self._recorded.popitem(last=False)

    def _remember_location(self, tenant: str, located: _Located) -> None:
        with self._lock:
            self._located[(tenant, located.position)] = located
            while len(self._located) > max(self._cache_size, 1024):
                self._located.popitem(last=False)


# ---------------------------------------------------------------------------------------------- definition store

class CosmosDefinitionStore:
    """Workflow definitions in the tenant's `definitions` container: one document per version, created (never
    replaced), so a version once stored is never overwritten; two puts racing for a version retry with the next."""

    MAX_ATTEMPTS = 50

    def __init__(self, client: CosmosClient, *, resolve: Resolver = default_location,
                 auto_create: bool = False) -> None:
        self._silos = _Silos(client, resolve, auto_create=auto_create)
        self.client = client

    def close(self) -> None:
        """Nothing to release: the client is the caller's."""

    def forget(self, tenant: str) -> None:
        """Resolve the tenant's containers again on its next call (after its configuration changed)."""
        self._silos.forget(tenant)

    def __enter__(self) -> CosmosDefinitionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        workflow_id = workflow_id_of(document)
        text = _encode(document)
        silo = self._silos.get(tenant)
        for _ in range(self.MAX_ATTEMPTS):
            latest = self._latest(tenant, silo, workflow_id)
            if expected_version is not None and expected_version != latest:
                raise DefinitionChanged(tenant, workflow_id, expected_version, latest)
            version = latest + 1
            with self._silos.translated(tenant):
                try:
                    silo.definitions.create_item({
                        "id": f"{_id_part(workflow_id)}:{version:08d}", "kind": "definition",
                        "workflowId": workflow_id, "version": version, "document": text,
                        "createdAt": _now()}, no_response=True)
                except exceptions.CosmosResourceExistsError:
                    if expected_version is not None:  # another put took the version this one expected to follow
                        raise DefinitionChanged(tenant, workflow_id, expected_version,
                                                self._latest(tenant, silo, workflow_id)) from None
                    continue  # another put took this version: take the next
            return version
        raise StoreUnavailable(STORE, f"tenant {tenant!r}: too many concurrent puts of workflow {workflow_id!r}")

    def _latest(self, tenant: str, silo: _Silo, workflow_id: str) -> int:
        docs = self._silos.query(tenant, silo.definitions, "SELECT TOP 1 c.version FROM c WHERE c.workflowId = @id"
                                 " AND c.kind = 'definition' ORDER BY c.version DESC",
                                 partition=workflow_id, id=workflow_id)
        return int(docs[0]["version"]) if docs else 0

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        silo = self._silos.get(tenant)
        if version is None:
            docs = self._silos.query(tenant, silo.definitions, "SELECT TOP 1 c.version, c.document FROM c"
                                     " WHERE c.workflowId = @id AND c.kind = 'definition' ORDER BY c.version DESC",
                                     partition=workflow_id, id=workflow_id)
        else:
            # A query, not a point read: cosmosdb-server answers a point read of a missing document with a 500.
            docs = self._silos.query(tenant, silo.definitions, "SELECT c.version, c.document FROM c"
                                     " WHERE c.workflowId = @id AND c.kind = 'definition' AND c.version = @version",
                                     partition=workflow_id, id=workflow_id, version=int(version))
        if not docs:
            raise WorkflowNotFound(tenant, workflow_id, version)
        document: dict[str, Any] = _decode(docs[0]["document"])
        return int(docs[0]["version"]), document

    def ping(self, tenant: str) -> None:
        """Raise StoreUnavailable when the tenant's definitions container cannot be reached (or does not exist)."""
        try:
            silo = self._silos.get(tenant)
            with self._silos.translated(tenant):
                silo.definitions.read()
        except TenantNotFound as e:
            raise StoreUnavailable(STORE, f"tenant {tenant!r}: its definitions container does not exist") from e

    def list(self, tenant: str) -> list[tuple[str, int]]:
        silo = self._silos.get(tenant)
        latest: dict[str, int] = {}
        for doc in self._silos.query(tenant, silo.definitions,
                                     "SELECT c.workflowId, c.version FROM c WHERE c.kind = 'definition'"):
            latest[doc["workflowId"]] = max(latest.get(doc["workflowId"], 0), int(doc["version"]))
        return sorted(latest.items())
