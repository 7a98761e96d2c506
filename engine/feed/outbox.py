"""The outbox: every commit reaches every subscriber at least once, and a subscriber never holds back the others.

A commit is stored undispatched (the event store does that). After the append the processor calls the
`Dispatcher` (its `on_commit`, or `many` with a group commit's commits), which only queues the commits and returns:
the worker thread is never held up by a subscriber. A commit that the subscription catalog's cache says nobody
wants goes straight to be marked (step 3), without waking the router. In the background:

1. a router thread maps the commit's events to CloudEvents once and picks the subscriptions that want them
   (types filter; a definition's subscriptions only see its workflow);
2. each subscription has its own *lane* (engine/feed/lanes.py), a queue served by up to `lane_concurrency`
   threads of a bounded pool (order is not promised anyway, and a subscriber 50 ms away would get 20 events/s
   from one connection), and by one thread only while its attempts keep failing; a tenant's lanes together use at
   most `tenant_concurrency` threads. A slow or dead subscriber fills its own lane, never another's, and a
   tenant's slow subscribers hold its own share of the threads, never another tenant's; a lane holding more than
   `lane_limit` deliveries drops the extra ones to the sweeper instead of growing without bound;
   a delivery is one attempt: one that fails and may be retried goes back to its lane after its backoff
   (`RetryPolicy`) without holding a thread, so the commits behind it are not held back;
3. when every lane has finished with the commit, it is marked dispatched — in batches, by a marker thread, so
   marking costs one write per batch and not one per commit (on SQLite, riding along the next group commit). If a
   delivery failed, the commit stays undispatched and the subscriptions it did reach are recorded, so the sweeper's
   retry skips them.

Subscription states (see subscriptions.py): an *active* subscription is delivered to; a failing delivery counts
against it and after `pause_after` consecutive failures it is *paused*. A commit that a paused subscription
should get is *owed*: the subscription's `backlog_from` keeps the lowest such feed position and the commit itself
no longer waits for it (so the undispatched set does not grow while a subscriber is away). On resume, the
subscription catches up by reading the feed from `backlog_from` in its own lane, filtered as usual. Nothing is
lost, order is not promised (the catch-up and new commits interleave), and a commit may arrive twice.
A *pending* subscription (no consent yet) or a *gone* one (410) is owed nothing.

The steps have modules of their own: lanes.py (a subscription's queue), outcomes.py (what a delivery does to its
subscription), handshake.py (a pending webhook's consent), marking.py (step 3), catchup.py (a resumed subscription's
backlog). The `Sweeper` (sweeper.py) republishes commits still undispatched after a grace period, and restarts the
catch-up of resumed subscriptions whose process died. `ChangeFeed` (changefeed.py) puts it together for hosts and
the API.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cloudevents.core.base import BaseCloudEvent

from engine.domain import Commit
from engine.feed.catalog import SubscriptionCatalog
from engine.feed.catchup import CatchUps
from engine.feed.cloudevents import CE_TYPES, CloudEventMapper
from engine.feed.eventgrid import EventGridPublisher
from engine.feed.handshake import PendingHandshakes
from engine.feed.lanes import LaneKey, Lanes
from engine.feed.marking import Mark, Marker
from engine.feed.outcomes import Accounting, Outcome, owe
from engine.feed.pausing import ResumePolicy
from engine.feed.subscriptions import Kind, Subscription, SubscriptionStatus
from engine.feed.webhook import DeliveryResult, RetryPolicy, WebhookPublisher
from engine.stores.base import EventStore

__all__ = ["Dispatcher", "Publisher"]

log = logging.getLogger("waymark.feed")

ACTIVE, PAUSED, PENDING = SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.PENDING


class Publisher(Protocol):
    def publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        ...


@dataclass(eq=False)
class _Work:
    """One commit on its way to its subscribers."""

    tenant: str
    commit: Commit
    remaining: int
    recorded: bool  # deliveries were recorded by an earlier attempt: forget them once dispatched
    delivered: list[str] = field(default_factory=list)
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def position(self) -> int:
        assert self.commit.position is not None
        return self.commit.position


class Dispatcher:
    """Publishes each commit to its subscribers, then marks it dispatched. Use the instance as the processor's
    `on_commit`. Never raises into the caller."""

    def __init__(self, store: EventStore, catalog: SubscriptionCatalog, *, webhook: WebhookPublisher,
                 eventgrid: Publisher | None = None, mapper: CloudEventMapper | None = None, max_workers: int = 32,
                 pause_after: int = 5, lane_limit: int = 10_000, lane_turn: int = 32, lane_concurrency: int = 8,
                 tenant_concurrency: int = 16, retry: RetryPolicy | None = None,
                 handshake_retry_seconds: float = 300.0, catch_up_page: int = 200, mark_delay: float = 0.05,
                 before_mark: Callable[[str, Sequence[int]], None] | None = None,
                 on_retry: Callable[[float], None] | None = None, rng: random.Random | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 resume_policy: ResumePolicy | None = None) -> None:
        self.store = store
        self.resume_policy = resume_policy or ResumePolicy()
        self.catalog = catalog
        self.webhook = webhook
        self._eventgrid = eventgrid
        self.mapper = mapper or CloudEventMapper(store)
        self.retry = retry or webhook.retry
        self.rng = rng or random.Random()
        self.on_retry = on_retry  # a test hook: told the delay of each retry scheduled
        self.monotonic = monotonic
        self.lanes = Lanes(threads=max_workers, per_tenant=tenant_concurrency, per_lane=lane_concurrency,
                           limit=lane_limit, turn=lane_turn)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # The commits on their way, each with the event set when it is done with, where someone waits for it.
        self._inflight: dict[tuple[str, int], threading.Event | None] = {}
        self.accounting = Accounting(catalog, pause_after=pause_after, resume_policy=self.resume_policy)
        self.handshakes = PendingHandshakes(catalog, webhook, retry_seconds=handshake_retry_seconds,
                                            monotonic=monotonic)
        # Each item: a tenant's commits handed over together (a group commit's), with the subscriptions to skip.
        self._routes: queue.SimpleQueue[
            tuple[str, list[Commit], frozenset[str]] | None] = queue.SimpleQueue()
        # Set while someone drains: the marker then marks at once rather than letting a batch build up.
        self._hurry = threading.Event()
        self._draining = 0
        self._closed = False
        self._catch_ups = CatchUps(store=store, catalog=catalog, mapper=self.mapper, lanes=self.lanes,
                                   accounting=self.accounting, publish=self._publish,
                                   next_attempt=self._next_attempt, later=self._later, page=catch_up_page,
                                   idle=self._idle, closed=lambda: self._closed)
        self._router = threading.Thread(target=self._route_loop, name="waymark-feed-router", daemon=True)
        self._marker = Marker(store, catalog.store, release=self._release, hurry=self._hurry, mark_delay=mark_delay,
                              before_mark=before_mark)
        self._router.start()

    # -------------------------------------------------------------------------------------- entry points

    def __call__(self, tenant: str, commit: Commit) -> None:
        """The processor's `on_commit`: queue the commit and return at once."""
        self.submit(tenant, commit)

    def many(self, tenant: str, commits: Sequence[Commit]) -> None:
        """The processor's hand-over of a group commit's commits. Those that no subscription wants, as far as the
        subscription catalog's cache tells without reading anything, go straight to be marked dispatched; the
        others go to the router together, in one hand-over. So in the steady state without subscribers the worker
        wakes no router at all: each wake-up hands the GIL over, which cost the worker more than this check."""
        new = self._admit(tenant, commits, waited=False)
        if not new:
            return
        try:
            unwanted, routed = self._sorted(tenant, new)
        except Exception:  # the router finds out
            unwanted, routed = [], new
        if unwanted:
            self._marker.add(tenant, unwanted)
        if routed:
            self._routes.put((tenant, routed, frozenset()))

    def _sorted(self, tenant: str, commits: Sequence[Commit]) -> tuple[list[Mark], list[Commit]]:
        """The commits the catalog's cache says no subscription wants, and the others (for the router)."""
        targets: dict[str, list[Subscription] | None] = {}
        unwanted: list[Mark] = []
        routed: list[Commit] = []
        for commit in commits:
            workflow_id = commit.state.workflow_id
            if workflow_id not in targets:
                targets[workflow_id] = self.catalog.cached_targets(tenant, workflow_id)
            known = targets[workflow_id]
            if known is None or _wanted(known, commit, ()):
                routed.append(commit)
            else:
                unwanted.append((commit, False))
        # Mapping is skipped, but the next commit may need them.
        self.mapper.remember(tenant, *(commit.state for commit, _ in unwanted))
        return unwanted, routed

    def submit(self, tenant: str, commit: Commit, *, skip: Collection[str] = ()) -> threading.Event | None:
        """Queue a commit for publishing, skipping the subscriptions in `skip` (already delivered). Returns an
        event set when the commit is done with (dispatched, or left for the sweeper); None once closed. A commit
        already on its way is not queued twice."""
        waiting: list[threading.Event] = []
        new = self._admit(tenant, [commit], waited=True, events=waiting)
        if new:
            self._routes.put((tenant, new, frozenset(skip)))
        return waiting[0] if waiting else None

    def _admit(self, tenant: str, commits: Sequence[Commit], *, waited: bool,
               events: list[threading.Event] | None = None) -> list[Commit]:
        """Note the commits as on their way; those that were not already (to be routed). `waited`: someone waits
        for them, and `events` gets, for each commit (also one already on its way), an event set when it is done
        with; the live path's commits, which nobody waits for one by one, get none (`drain` waits for all).
        Nothing once closed."""
        if any(commit.position is None for commit in commits):
            raise ValueError("only a stored commit (with a feed position) can be published")
        new: list[Commit] = []
        with self._lock:
            if self._closed:
                return []
            for commit in commits:
                key = (tenant, commit.position or 0)
                if key not in self._inflight:
                    self._inflight[key] = None
                    new.append(commit)
                done = self._inflight[key]
                if waited and events is not None:
                    if done is None:
                        done = self._inflight[key] = threading.Event()
                    events.append(done)
        return new

    def catch_up(self, tenant: str, subscription: Subscription) -> bool:
        """Deliver a resumed subscription's backlog in its lane (catchup.py). False if one is already running here."""
        return self._catch_ups.start(tenant, subscription)

    def wait_for(self, commits: Iterable[tuple[str, int | None]], timeout: float) -> bool:
        """Wait until these commits (tenant, feed position) are done with — dispatched, or left for the sweeper —
        and for no others; False if one is not after `timeout` seconds."""
        deadline = self.monotonic() + timeout
        pending: list[threading.Event] = []
        with self._lock:
            for tenant, position in commits:
                key = (tenant, position or 0)
                if position is None or key not in self._inflight:
                    continue  # done with already
                done = self._inflight[key]
                if done is None:  # the live path's commits get their event when someone waits for them
                    done = self._inflight[key] = threading.Event()
                pending.append(done)
        return all(done.wait(max(0.0, deadline - self.monotonic())) for done in pending)

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is in flight (every queued commit done with, every catch-up over)."""
        deadline = self.monotonic() + timeout
        with self._idle:
            self._draining += 1
            self._hurry.set()
            try:
                while self._inflight or self._catch_ups.running:
                    left = deadline - self.monotonic()
                    if left <= 0:
                        return False
                    self._idle.wait(min(left, 0.1))
            finally:
                self._draining -= 1
                if not self._draining:
                    self._hurry.clear()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting commits, give those in flight `timeout` seconds, then stop. What is not done stays
        undispatched for the next sweeper."""
        self.drain(timeout)
        with self._lock:
            self._closed = True
        self._routes.put(None)
        self._marker.close()
        self._router.join(timeout=1.0)
        self.lanes.close()  # scheduled retries are dropped: those commits stay undispatched for the sweeper
        self._marker.join(2.0)

    # -------------------------------------------------------------------------------------- routing

    def _route_loop(self) -> None:
        while True:
            item = self._routes.get()
            if item is None:
                return
            tenant, commits, skip = item
            unwanted: list[Mark] = []  # the commits no subscription wants: marked together
            for commit in commits:
                try:
                    mark = self._route(tenant, commit, skip)
                except Exception:
                    log.exception("routing a commit failed; the sweeper will retry it",
                                  extra={"tenant": tenant, "instanceId": commit.instance_id,
                                         "position": commit.position})
                    self._release(tenant, commit)
                    continue
                if mark is not None:
                    unwanted.append(mark)
            if unwanted:
                self._marker.add(tenant, unwanted)

    def _route(self, tenant: str, commit: Commit, skip: Collection[str]) -> Mark | None:
        """Hand the commit to the lanes of the subscriptions that want it; its mark when none does."""
        targets = _wanted(self.catalog.targets(tenant, commit.state.workflow_id), commit, skip)
        if not targets:
            return self._unwanted(tenant, commit, recorded=bool(skip))
        events = self.mapper.events(tenant, commit)
        plan = [(s, [e for e in events if s.wants(e.get_type())]) for s in targets]
        work = _Work(tenant, commit, remaining=len(plan), recorded=bool(skip))
        for subscription, wanted in plan:
            if not self.lanes.push((tenant, subscription.name), self._task(work, subscription, wanted, 1)):
                log.warning("the lane of subscription %s is full; the sweeper will deliver this commit later",
                            subscription.name, extra={"tenant": tenant, "position": commit.position})
                self._finished(work, subscription.name, Outcome.FAILED)
        return None

    def _unwanted(self, tenant: str, commit: Commit, *, recorded: bool = False) -> Mark:
        """A commit no subscription wants: to be marked dispatched as it is."""
        self.mapper.remember(tenant, commit.state)  # mapping is skipped, but the next commit may need it
        return commit, recorded

    def _release(self, tenant: str, *commits: Commit) -> None:
        """The commits are done with (dispatched, or left for the sweeper)."""
        with self._idle:
            dones = [self._inflight.pop((tenant, commit.position or 0), None) for commit in commits]
            self._idle.notify_all()
        for done in dones:
            if done is not None:
                done.set()

    # -------------------------------------------------------------------------------------- delivering

    def publisher(self, subscription: Subscription) -> Publisher:
        if subscription.kind is Kind.EVENTGRID:
            if self._eventgrid is None:
                self._eventgrid = EventGridPublisher()
            return self._eventgrid
        return self.webhook

    def _task(self, work: _Work, spec: Subscription, events: Sequence[BaseCloudEvent],
              attempt: int) -> Callable[[], None]:
        def deliver() -> None:
            outcome = self._deliver(work, spec, events, attempt)
            if outcome is not None:
                self._finished(work, spec.name, outcome)

        return deliver

    def _deliver(self, work: _Work, spec: Subscription, events: Sequence[BaseCloudEvent],
                 attempt: int) -> Outcome | None:
        """Attempt `attempt` of a commit's delivery to one subscription: its outcome, or None when a retry is
        scheduled."""
        tenant = work.tenant
        try:
            subscription = self.catalog.current(tenant, spec)
            if subscription is None:
                return Outcome.SKIPPED
            if subscription.status is PENDING:
                subscription = self.handshakes.try_(tenant, subscription)
            if subscription.status is PAUSED:
                self.catalog.modify(tenant, subscription, lambda s: owe(s, work.position))
                return Outcome.OWED
            if subscription.status is not ACTIVE:
                return Outcome.SKIPPED
            key = (tenant, subscription.name)
            result = self.publisher(subscription).publish(subscription, events)
            self.lanes.attempted(key, result.ok)
            delay, result = self._next_attempt(result, attempt)
            if delay is not None:
                rest = events[result.delivered:]
                if self._later(delay, key, self._task(work, spec, rest, attempt + 1)):
                    return None
                return Outcome.FAILED  # closing: the sweeper delivers it
            return self.accounting.account(tenant, subscription, result, work.position)
        except Exception:
            log.exception("delivering a commit failed; the sweeper will retry it",
                          extra={"tenant": tenant, "subscription": spec.name, "position": work.position})
            return Outcome.FAILED

    def _publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        return self.publisher(subscription).publish(subscription, events)

    def _next_attempt(self, result: DeliveryResult, attempt: int) -> tuple[float | None, DeliveryResult]:
        return self.retry.next_attempt(result, attempt, self.rng)

    def _later(self, delay: float, key: LaneKey, task: Callable[[], None]) -> bool:
        if self.on_retry is not None:
            self.on_retry(delay)
        return self.lanes.later(delay, key, task)

    def _finished(self, work: _Work, name: str, outcome: Outcome) -> None:
        with work.lock:
            work.remaining -= 1
            if outcome is Outcome.DELIVERED:
                work.delivered.append(name)
            elif outcome is Outcome.FAILED:
                work.failed = True
            last = work.remaining == 0
        if not last:
            return
        if not work.failed:
            self._marker.add(work.tenant, [(work.commit, work.recorded)])
            return
        try:
            if work.delivered:
                self.catalog.store.record_deliveries(work.tenant, work.position, work.delivered)
        except Exception:
            log.exception("could not record deliveries; the sweeper's retry may deliver them again",
                          extra={"tenant": work.tenant, "position": work.position})
        self._release(work.tenant, work.commit)


def _wanted(targets: Iterable[Subscription], commit: Commit, skip: Collection[str]) -> list[Subscription]:
    """The subscriptions of `targets` (but those in `skip`) that want one of the commit's events."""
    if not targets:
        return []
    types = [CE_TYPES[event.type] for event in commit.events]
    return [s for s in targets if s.name not in skip and any(s.wants(t) for t in types)]
