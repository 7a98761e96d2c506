"""The Cosmos DB event store: the port's face (engine/stores/base.py), and loading.

**Loading.** The commit document carries the instance after it, as JSON text: a load is one `TOP 1 … ORDER BY
firstSequence DESC` query in the instance's partition, whatever the length of its history. In the processor's
find-then-decide (`base.load_follows`), an instance whose head this store holds costs no read at all:
`find_trigger` answers a trigger recorded by this store from memory and any other as not recorded, and the `load`
that follows returns the head held. Were the trigger recorded elsewhere, or the head moved on by another writer,
the append's create collides (409 on the commit's id or its trigger key) and the processor is told which
(`DuplicateTrigger`: the first result is answered; `ConcurrencyConflict`: it reloads and decides again) — a trigger
is never applied twice, though one decided on a stale head has had its actions run (as when two workers race for
one message). Without a head held, `find_trigger` queries "the commit of this trigger, or any commit after the head
I know" and hands the head it read to the `load`. So the steady state of a trigger is the append alone: the
position and the create, 2 requests (and 1 + 1/n in a worker's group commit of n, `append_many`, whose positions
are taken in one request).

Appending is in appends.py, feed positions in positions.py, the feed and the outbox side in feed.py, the listings
in listing.py (the package's `__init__` lists them all).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from azure.cosmos import CosmosClient

from engine.domain import Commit, Event, Instance, InstanceNotFound, StoreUnavailable, TenantNotFound
from engine.drivers.cosmos import Resolver, default_location
from engine.stores.base import Page, PendingCommit, load_expected
from engine.stores.checks import check_commit, check_limit
from engine.stores.cosmos import listing
from engine.stores.cosmos.appends import Appender
from engine.stores.cosmos.containers import STORE, Silo, Silos, ensure_tenant
from engine.stores.cosmos.documents import commit_of, decode, instance_of, trigger_key
from engine.stores.cosmos.feed import CommitFeed, outbox_state
from engine.stores.cosmos.outbox import OutboxState
from engine.stores.cosmos.positions import GAP_GRACE_SECONDS, FeedPositions
from engine.stores.cosmos.reads import query_head, trigger_doc
from engine.stores.cosmos.remembered import Remembered

HANDOFF_SECONDS = 1.0  # a head read by find_trigger serves the load that follows it for this long at most


class CosmosEventStore:
    """The event store on Cosmos DB. Thread-safe; share one per process (and one `CosmosClient` per account).

    `resolve` names each tenant's database and containers (default `waymark-{tenant}`). With `auto_create`, a
    tenant's database and containers are created on its first use here (key auth, local servers); without it a
    tenant whose database is missing is `TenantNotFound` (`ping`: `StoreUnavailable`).
    """

    def __init__(self, client: CosmosClient, *, resolve: Resolver = default_location, auto_create: bool = False,
                 cache_size: int = 4096, gap_grace: float = GAP_GRACE_SECONDS) -> None:
        self._silos = Silos(client, resolve, auto_create=auto_create, check_events=True)
        self.client = client
        self.gap_grace = gap_grace
        self._remembered = Remembered(cache_size)
        self._positions = FeedPositions(self._silos)
        self._appender = Appender(self._silos, self._remembered, self._positions)
        self._feed = CommitFeed(self._silos, self._remembered, gap_grace)
        self._local = threading.local()

    def close(self) -> None:
        """Mark the feed positions kept for a retry that never came as gaps (best effort). The client is the
        caller's (one per account, shared): it stays open."""
        self._positions.close()

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
        self._remembered.forget(tenant)
        self._positions.forget(tenant)

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

    # ------------------------------------------------------------------------------------------ writing

    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        events = tuple(events)
        check_commit(instance_id, expected_version, events, state)
        self._local.handoff = None
        return self._appender.append(tenant, PendingCommit(instance_id, expected_version, events, state))

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
        return self._appender.append_many(tenant, pending)

    # ------------------------------------------------------------------------------------------ the outbox side

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        """Index the instances of these commits (newest state per instance), then mark the commits dispatched in the
        tenant's outbox document (one request for the batch: see engine/stores/cosmos/outbox.py). Unknown
        positions are ignored."""
        if not positions:
            return
        self._local.handoff = None
        self._feed.mark_dispatched(tenant, positions)

    def repair_index(self, tenant: str, *, limit: int = 1000) -> int:
        """The sweeper's pass over a tenant: fold the outbox marks into its watermark (`compact`), then bring the
        index up to every commit neither indexed nor marked (a crash between commit and index, commits the outbox
        cannot mark because their publishing keeps failing, or has not marked yet), at most `limit` of them;
        returns how many were indexed."""
        self._local.handoff = None
        return self._feed.repair_index(tenant, limit=limit)

    def compact(self, tenant: str, *, attempts: int = 3) -> OutboxState:
        """Fold the tenant's outbox marks into its watermark (see engine/stores/cosmos/outbox.py); the state after.
        A concurrent mark or compaction makes the replace fail on the etag: read again, up to `attempts` times."""
        return self._feed.compact(tenant, attempts=attempts)

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        if limit <= 0:
            return []
        self._local.handoff = None
        return self._feed.undispatched(tenant, committed_before=committed_before, limit=limit)

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
        current = query_head(self._silos, self._remembered, tenant, silo, instance_id)
        if current is None:
            raise InstanceNotFound(tenant, instance_id)
        return current

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
        events = [Event.from_dict(event) for doc in docs for event in decode(doc["events"])
                  if event["sequence"] > after]
        return events if limit is None else events[:limit]

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        self._local.handoff = None
        key = (tenant, instance_id)
        if load_expected():
            # The processor's find-then-decide (see the module docstring): a trigger recorded here is answered from
            # memory, and with a head in memory nothing is read — were the trigger recorded elsewhere, or the head
            # stale, the append's create collides (409) and says so.
            recorded = self._remembered.recorded(tenant, instance_id, trigger_id)
            if recorded is not None:
                return recorded
            head = self._remembered.head(key)
            if head is not None:
                self._local.handoff = (tenant, instance_id, head, time.monotonic())
                return None
        silo = self._silos.get(tenant)
        known = self._remembered.version(key)
        if known is None:
            found = trigger_doc(self._silos, tenant, silo, instance_id, trigger_id)
            return None if found is None else self._found(tenant, silo, found)
        return self._find_after(tenant, silo, instance_id, trigger_id, known)

    def _find_after(self, tenant: str, silo: Silo, instance_id: str, trigger_id: str, known: int) -> Commit | None:
        """One request: the trigger's commit, and any commit after the head this store knows, which makes the
        `load` that follows free."""
        key = (tenant, instance_id)
        wanted_key = trigger_key(trigger_id, 0)
        docs = self._silos.query(tenant, silo.events, "SELECT * FROM c WHERE c.instanceId = @id AND c.kind = 'commit'"
                                 " AND (c.triggerKey = @key OR c.firstSequence > @version)",
                                 partition=instance_id, id=instance_id, key=wanted_key, version=known)
        newer = [doc for doc in docs if doc["firstSequence"] > known]
        head = self._remembered.head(key)
        if newer:
            head = instance_of(max(newer, key=lambda doc: int(doc["firstSequence"])))
            self._remembered.remember_head(key, head)
        if head is not None and load_expected():
            self._local.handoff = (tenant, instance_id, head, time.monotonic())
        for doc in docs:
            if doc.get("triggerKey") == wanted_key:
                return self._found(tenant, silo, doc)
        return None

    def _found(self, tenant: str, silo: Silo, doc: Mapping[str, Any]) -> Commit:
        """A commit document found by its trigger, with whether it is dispatched (from the tenant's outbox)."""
        return commit_of(doc, outbox_state(self._silos, tenant, silo))

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        """Commits after `after` in position order, up to the first gap younger than `gap_grace` (a position
        taken by a commit that may still be on its way): every commit is returned once, in a stable order."""
        if limit <= 0:
            return []
        self._local.handoff = None
        return self._feed.read_feed(tenant, after=after, limit=limit)

    # ------------------------------------------------------------------------------------------ listing

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        check_limit(limit)
        self._local.handoff = None
        return listing.list_instances(self._silos, tenant, status=status, workflow_id=workflow_id, state=state,
                                      limit=limit, continuation=continuation)

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        if not subjects:
            return []
        self._local.handoff = None
        return listing.interested(self._silos, tenant, subjects)
