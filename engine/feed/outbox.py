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

The `Sweeper` republishes commits still undispatched after a grace period (a crash between append and mark, a
failed delivery, a full lane), and restarts the catch-up of resumed subscriptions whose process died. Run it
once per timer tick (`sweep_once`) or as a thread (`start`).

`ChangeFeed` puts it together for hosts and the API: dispatcher, sweeper, subscriptions and the pull feed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from cloudevents.core.base import BaseCloudEvent

from engine.domain import Commit, timestamp
from engine.feed.cloudevents import CE_TYPES, CloudEventMapper, to_batch
from engine.feed.eventgrid import EventGridPublisher
from engine.feed.handshake import shake_hands
from engine.feed.lanes import LaneKey, Lanes
from engine.feed.pausing import PAUSED_SIGNAL, ResumePolicy, needs_attention, paused_by_failures, resume, signal
from engine.feed.subscriptions import (
    NAME_PATTERN,
    InvalidSubscription,
    Kind,
    Mode,
    Source,
    StaticSubscription,
    Subscription,
    SubscriptionCatalog,
    SubscriptionStatus,
    SubscriptionStore,
    TooManySubscriptions,
    check_types,
)
from engine.feed.webhook import DeliveryResult, RetryPolicy, WebhookPublisher
from engine.outbound import ManagedIdentityTokens
from engine.schemas import DEFAULT_SCHEMA_BASE
from engine.stores.base import EventStore

__all__ = ["ChangeFeed", "Dispatcher", "FeedPage", "Publisher", "SweepReport", "Sweeper"]

log = logging.getLogger("waymark.feed")

ACTIVE, PAUSED, PENDING, GONE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.PENDING,
                                 SubscriptionStatus.GONE)


class Publisher(Protocol):
    def publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        ...


class _Outcome(StrEnum):
    DELIVERED = "delivered"
    OWED = "owed"  # the subscription is paused: it gets the commit when it catches up
    SKIPPED = "skipped"  # pending, gone or deleted: owed nothing
    FAILED = "failed"  # the commit stays undispatched for the sweeper


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


# A commit to be marked dispatched, and whether deliveries of it were recorded (to forget once it is marked).
_Mark = tuple[Commit, bool]


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
        self.pause_after = pause_after
        self.retry = retry or webhook.retry
        self.rng = rng or random.Random()
        self.handshake_retry_seconds = handshake_retry_seconds
        self.catch_up_page = catch_up_page
        self.mark_delay = mark_delay
        self.before_mark = before_mark  # a test hook: the fault test kills the process here
        self.on_retry = on_retry  # a test hook: told the delay of each retry scheduled
        self.monotonic = monotonic
        self.lanes = Lanes(threads=max_workers, per_tenant=tenant_concurrency, per_lane=lane_concurrency,
                           limit=lane_limit, turn=lane_turn)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # The commits on their way, each with the event set when it is done with, where someone waits for it.
        self._inflight: dict[tuple[str, int], threading.Event | None] = {}
        self._catching_up: set[tuple[str, str]] = set()
        self._handshakes: dict[tuple[str, str], float] = {}
        self._handshake_locks: dict[tuple[str, str], threading.Lock] = {}
        self._failed_lately: set[LaneKey] = set()  # subscriptions whose last delivery failed (in this process)
        # Each item: a tenant's commits handed over together (a group commit's), with the subscriptions to skip.
        self._routes: queue.SimpleQueue[
            tuple[str, list[Commit], frozenset[str]] | None] = queue.SimpleQueue()
        self._marks: dict[str, list[_Mark]] = {}
        self._mark_ready = threading.Condition(threading.Lock())
        # Set while someone drains: the marker then marks at once rather than letting a batch build up.
        self._hurry = threading.Event()
        self._draining = 0
        self._closed = False
        self._router = threading.Thread(target=self._route_loop, name="waymark-feed-router", daemon=True)
        self._marker = threading.Thread(target=self._mark_loop, name="waymark-feed-marker", daemon=True)
        self._router.start()
        self._marker.start()

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
            self._to_mark(tenant, unwanted)
        if routed:
            self._routes.put((tenant, routed, frozenset()))

    def _sorted(self, tenant: str, commits: Sequence[Commit]) -> tuple[list[_Mark], list[Commit]]:
        """The commits the catalog's cache says no subscription wants, and the others (for the router)."""
        targets: dict[str, list[Subscription] | None] = {}
        unwanted: list[_Mark] = []
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
        """Deliver a resumed subscription's backlog in its lane. False if one is already running here."""
        key = (tenant, subscription.name)
        with self._lock:
            if self._closed or key in self._catching_up:
                return False
            self._catching_up.add(key)
        if not self.lanes.push(key, lambda: self._catch_up(tenant, subscription)):
            self._caught_up(key)
            return False
        return True

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
                while self._inflight or self._catching_up:
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
        with self._mark_ready:
            self._mark_ready.notify_all()
        self._router.join(timeout=1.0)
        self.lanes.close()  # scheduled retries are dropped: those commits stay undispatched for the sweeper
        self._marker.join(timeout=2.0)

    # -------------------------------------------------------------------------------------- routing

    def _route_loop(self) -> None:
        while True:
            item = self._routes.get()
            if item is None:
                return
            tenant, commits, skip = item
            unwanted: list[_Mark] = []  # the commits no subscription wants: marked together
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
                self._to_mark(tenant, unwanted)

    def _route(self, tenant: str, commit: Commit, skip: Collection[str]) -> _Mark | None:
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
                self._finished(work, subscription.name, _Outcome.FAILED)
        return None

    def _unwanted(self, tenant: str, commit: Commit, *, recorded: bool = False) -> _Mark:
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
                 attempt: int) -> _Outcome | None:
        """Attempt `attempt` of a commit's delivery to one subscription: its outcome, or None when a retry is
        scheduled."""
        tenant = work.tenant
        try:
            subscription = self.catalog.current(tenant, spec)
            if subscription is None:
                return _Outcome.SKIPPED
            if subscription.status is PENDING:
                subscription = self._try_handshake(tenant, subscription)
            if subscription.status is PAUSED:
                self.catalog.modify(tenant, subscription, lambda s: _owe(s, work.position))
                return _Outcome.OWED
            if subscription.status is not ACTIVE:
                return _Outcome.SKIPPED
            key = (tenant, subscription.name)
            result = self.publisher(subscription).publish(subscription, events)
            self.lanes.attempted(key, result.ok)
            delay, result = self._next_attempt(result, attempt)
            if delay is not None:
                rest = events[result.delivered:]
                if self._later(delay, key, self._task(work, spec, rest, attempt + 1)):
                    return None
                return _Outcome.FAILED  # closing: the sweeper delivers it
            return self._account(tenant, subscription, result, work.position)
        except Exception:
            log.exception("delivering a commit failed; the sweeper will retry it",
                          extra={"tenant": tenant, "subscription": spec.name, "position": work.position})
            return _Outcome.FAILED

    def _next_attempt(self, result: DeliveryResult, attempt: int) -> tuple[float | None, DeliveryResult]:
        """When to try a failed delivery again (None: not again now), and the result to count if not."""
        if result.ok or result.gone or not result.retryable or attempt >= self.retry.attempts:
            return None, result
        if result.retry_after is None:
            return self.retry.backoff(attempt, self.rng), result
        if result.retry_after > self.retry.max_retry_after:
            return None, dataclasses.replace(result, error=(
                f"{result.error}; Retry-After of {result.retry_after:.0f}s is beyond the "
                f"{self.retry.max_retry_after:.0f}s a delivery waits"))
        return result.retry_after, result

    def _later(self, delay: float, key: LaneKey, task: Callable[[], None]) -> bool:
        if self.on_retry is not None:
            self.on_retry(delay)
        return self.lanes.later(delay, key, task)

    def _account(self, tenant: str, subscription: Subscription, result: DeliveryResult, position: int) -> _Outcome:
        """Record what a delivery (its last attempt) did to the subscription's state; the outcome for the
        commit."""
        key = (tenant, subscription.name)
        with self._lock:
            struggled = key in self._failed_lately
            if result.ok:
                self._failed_lately.discard(key)
            else:
                self._failed_lately.add(key)
        if result.ok:
            if subscription.consecutive_failures or subscription.pauses or struggled:  # (the read may be old)
                self.catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
                    s, consecutive_failures=0, pauses=0) if s.consecutive_failures or s.pauses else s)
            return _Outcome.DELIVERED
        at = self.catalog.timestamp()
        error = result.error or "delivery failed"
        if result.gone:
            self.catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
                s, status=GONE, last_error=error, last_error_at=at, backlog_from=None))
            log.warning("subscription %s is gone (410); it gets no more events until resumed", subscription.name,
                        extra={"tenant": tenant})
            return _Outcome.SKIPPED

        def failed(s: Subscription) -> Subscription:
            failures = s.consecutive_failures + 1
            changed = dataclasses.replace(s, consecutive_failures=failures, last_error=error, last_error_at=at)
            if s.status is ACTIVE and failures >= self.pause_after:  # paused now; it resumes by itself later
                changed = paused_by_failures(changed, at, self.resume_policy)
            return _owe(changed, position) if changed.status is PAUSED else changed

        changed = self.catalog.modify(tenant, subscription, failed)
        if changed.status is PAUSED:
            if subscription.status is ACTIVE and changed.paused_at == at:
                signal(PAUSED_SIGNAL, tenant, changed, f"after {changed.consecutive_failures} consecutive failures "
                       f"({error}); what it is owed is kept, and it resumes by itself at {changed.resume_at}")
            return _Outcome.OWED
        log.info("delivery to %s failed (%d in a row): %s", subscription.name, changed.consecutive_failures, error,
                 extra={"tenant": tenant, "position": position})
        return _Outcome.FAILED

    def _try_handshake(self, tenant: str, subscription: Subscription) -> Subscription:
        """A definition's or the configuration's webhook is registered the first time it is needed: the
        handshake runs then, and is retried at most every `handshake_retry_seconds` while it is refused. API
        subscriptions shake hands when they are PUT or resumed. One handshake at a time per subscription: the
        deliveries that wait for it then see its outcome."""
        if subscription.kind is not Kind.WEBHOOK or subscription.source is Source.API:
            return subscription
        key = (tenant, subscription.name)
        with self._lock:
            lock = self._handshake_locks.setdefault(key, threading.Lock())
        with lock:
            current = self.catalog.current(tenant, subscription) or subscription
            if current.status is not PENDING:
                return current
            now = self.monotonic()
            last = self._handshakes.get(key)
            if last is not None and now - last < self.handshake_retry_seconds:
                return current
            self._handshakes[key] = now
            return shake_hands(self.catalog, self.webhook, tenant, current)

    def _finished(self, work: _Work, name: str, outcome: _Outcome) -> None:
        with work.lock:
            work.remaining -= 1
            if outcome is _Outcome.DELIVERED:
                work.delivered.append(name)
            elif outcome is _Outcome.FAILED:
                work.failed = True
            last = work.remaining == 0
        if not last:
            return
        if not work.failed:
            self._to_mark(work.tenant, [(work.commit, work.recorded)])
            return
        try:
            if work.delivered:
                self.catalog.store.record_deliveries(work.tenant, work.position, work.delivered)
        except Exception:
            log.exception("could not record deliveries; the sweeper's retry may deliver them again",
                          extra={"tenant": work.tenant, "position": work.position})
        self._release(work.tenant, work.commit)

    # -------------------------------------------------------------------------------------- marking

    def _to_mark(self, tenant: str, marks: Sequence[_Mark]) -> None:
        with self._mark_ready:
            self._marks.setdefault(tenant, []).extend(marks)
            self._mark_ready.notify()

    def _mark_loop(self) -> None:
        while True:
            with self._mark_ready:
                while not self._marks and not self._closed:
                    self._mark_ready.wait(0.5)
            # Let a batch build up: marking is one write transaction on the tenant's event file, competing with
            # appends for its lock, and nothing waits for it (the sweeper's grace period is far longer) — unless
            # someone drains (a shutdown, a test): then at once.
            if not self._closed:
                self._hurry.wait(self.mark_delay)
            with self._mark_ready:
                batch, self._marks = self._marks, {}
            if not batch and self._closed:
                return
            for tenant, marks in batch.items():
                positions = [commit.position or 0 for commit, _ in marks]
                try:
                    if self.before_mark is not None:
                        self.before_mark(tenant, positions)
                    self.store.mark_dispatched(tenant, positions)
                    recorded = [commit.position or 0 for commit, was_recorded in marks if was_recorded]
                    if recorded:
                        self.catalog.store.forget_deliveries(tenant, recorded)
                except Exception:
                    log.exception("marking commits dispatched failed; the sweeper will publish them again",
                                  extra={"tenant": tenant, "positions": positions[:10]})
                self._release(tenant, *(commit for commit, _ in marks))

    # -------------------------------------------------------------------------------------- catching up

    def _catch_up(self, tenant: str, spec: Subscription, attempt: int = 1) -> None:
        key = (tenant, spec.name)
        again = False
        try:
            while True:
                subscription = self.catalog.current(tenant, spec)
                if subscription is None or subscription.status is not ACTIVE or subscription.backlog_from is None:
                    return
                start = subscription.backlog_from
                commits = self.store.read_feed(tenant, after=start - 1, limit=self.catch_up_page)
                wanted = [c for c in commits if subscription.selects(c.state.workflow_id)]
                for commit, events in zip(wanted, self.mapper.page(tenant, wanted), strict=True):
                    chosen = [event for event in events if subscription.wants(event.get_type())]
                    if not chosen:
                        continue
                    current = self.catalog.current(tenant, spec)
                    if current is None or current.status is not ACTIVE:
                        return
                    assert commit.position is not None
                    result = self.publisher(current).publish(current, chosen)
                    self.lanes.attempted(key, result.ok)
                    delay, result = self._next_attempt(result, attempt)
                    if delay is not None:  # resume here after the backoff, without holding the thread meanwhile
                        self._advance(tenant, current, start, commit.position)
                        again = self._later(delay, key, functools.partial(self._catch_up, tenant, spec, attempt + 1))
                        return
                    attempt = 1
                    if self._account(tenant, current, result, commit.position) is not _Outcome.DELIVERED:
                        self._advance(tenant, current, start, commit.position)  # resume here next time
                        return
                finished = len(commits) < self.catch_up_page
                following = None if finished else (commits[-1].position or start) + 1
                self._advance(tenant, subscription, start, following)
                if finished:
                    log.info("subscription %s has caught up", spec.name, extra={"tenant": tenant})
                    return
        except Exception:
            log.exception("catching up failed; the sweeper will restart it", extra={"tenant": tenant,
                                                                                     "subscription": spec.name})
        finally:
            if not again:
                self._caught_up(key)

    def _advance(self, tenant: str, subscription: Subscription, start: int, following: int | None) -> None:
        def advance(s: Subscription) -> Subscription:
            if s.backlog_from != start:  # changed meanwhile (e.g. gone): leave it
                return s
            return dataclasses.replace(s, backlog_from=following)

        self.catalog.modify(tenant, subscription, advance)

    def _caught_up(self, key: tuple[str, str]) -> None:
        with self._idle:
            self._catching_up.discard(key)
            self._idle.notify_all()


def _wanted(targets: Iterable[Subscription], commit: Commit, skip: Collection[str]) -> list[Subscription]:
    """The subscriptions of `targets` (but those in `skip`) that want one of the commit's events."""
    if not targets:
        return []
    types = [CE_TYPES[event.type] for event in commit.events]
    return [s for s in targets if s.name not in skip and any(s.wants(t) for t in types)]


def _owe(subscription: Subscription, position: int) -> Subscription:
    backlog = position if subscription.backlog_from is None else min(subscription.backlog_from, position)
    return dataclasses.replace(subscription, backlog_from=backlog)


# ---------------------------------------------------------------------------------------------- the sweeper

@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int  # undispatched commits found past the grace period and published again
    unfinished: int  # of those, how many were not done with when the sweep stopped waiting
    catch_ups: int  # backlogs of active subscriptions (re)started
    repaired: int = 0  # commits brought into the instance index by the store's `repair_index` (Cosmos)


class Sweeper:
    """Publishes again what the live path did not finish: every commit still undispatched `grace_seconds` after
    it was decided, for every tenant; and restarts unfinished catch-ups.

    When the event store has `repair_index(tenant, limit=…)` (Cosmos, whose instance index is a projection written
    after the commit by the outbox), each pass also brings every tenant's index up to its commits: a crash between
    a commit and its index update, or commits the outbox cannot mark because their publishing keeps failing, make
    listings read more until then (never wrong). Its failures are logged; they stop neither the pass nor the
    republishing."""

    def __init__(self, dispatcher: Dispatcher, tenants: Callable[[], Iterable[str]], *, grace_seconds: float = 30.0,
                 batch: int = 500, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.dispatcher = dispatcher
        self.tenants = tenants
        self.grace_seconds = grace_seconds
        self.batch = batch
        self.now = now
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sweep_once(self, *, wait: float = 60.0) -> SweepReport:
        """One pass over every tenant; waits up to `wait` seconds for what it republished to be done with."""
        now = timestamp(self.now())
        cutoff = timestamp(self.now() - timedelta(seconds=self.grace_seconds))
        dispatcher = self.dispatcher
        waiting: list[threading.Event] = []
        catch_ups = repaired = 0
        repair = getattr(dispatcher.store, "repair_index", None)
        for tenant in list(self.tenants()):
            if callable(repair):
                try:
                    repaired += int(repair(tenant, limit=self.batch))
                except Exception:
                    log.exception("repairing the instance index of tenant %s failed; the next sweep tries again",
                                  tenant)
            try:
                for commit in dispatcher.store.undispatched(tenant, committed_before=cutoff, limit=self.batch):
                    assert commit.position is not None
                    skip = dispatcher.catalog.store.deliveries(tenant, commit.position)
                    done = dispatcher.submit(tenant, commit, skip=skip)
                    if done is not None:
                        waiting.append(done)
                for subscription in dispatcher.catalog.list(tenant):
                    if subscription.status is PAUSED and subscription.resume_at and subscription.resume_at <= now:
                        subscription = resume(dispatcher.catalog, dispatcher.webhook, tenant, subscription,
                                              automatic=True, policy=dispatcher.resume_policy,
                                              catch_up=dispatcher.catch_up)
                    if subscription.status is ACTIVE and subscription.backlog_from is not None:
                        catch_ups += dispatcher.catch_up(tenant, subscription)
            except Exception:
                log.exception("sweeping tenant %s failed; the next sweep tries again", tenant)
        deadline = time.monotonic() + wait
        unfinished = 0
        for done in waiting:
            if not done.wait(max(0.0, deadline - time.monotonic())):
                unfinished += 1
        if waiting:
            log.info("sweep republished %d commit(s), %d not finished yet", len(waiting), unfinished)
        if repaired:
            log.info("sweep brought %d commit(s) into the instance index", repaired)
        return SweepReport(len(waiting), unfinished, catch_ups, repaired)

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.sweep_once(wait=interval)
            except Exception:
                log.exception("the sweep failed; trying again in %.0fs", interval)
            stop.wait(interval)

    def start(self, interval: float = 10.0) -> threading.Thread:
        """The sweeper as a daemon thread (what `waymark serve` runs)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop, interval), name="waymark-sweeper",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


# ---------------------------------------------------------------------------------------------- the facade

@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of the pull feed: CloudEvents in commit order and the position to continue after."""

    events: Sequence[BaseCloudEvent]
    next_position: int
    commits: int

    def body(self) -> bytes:
        return to_batch(self.events)


class ChangeFeed:
    """The change feed of an engine: what hosts wire (`on_commit`, `start`, `close`) and what the API calls."""

    def __init__(self, events: EventStore, subscriptions: SubscriptionStore, *, definitions: Any = None,
                 static: Sequence[StaticSubscription] = (),
                 tenant_config: Callable[[str], Mapping[str, Any]] | None = None,
                 tenants: Callable[[], Iterable[str]] = tuple, origin: str = "waymark",
                 allow_private_destinations: bool = False, webhook: WebhookPublisher | None = None,
                 webhook_timeout: float = 10.0, tokens: ManagedIdentityTokens | None = None,
                 eventgrid: Publisher | None = None, grace_seconds: float = 30.0,
                 pause_after: int = 5,
                 max_workers: int = 64, lane_concurrency: int = 16, tenant_concurrency: int = 24,
                 retry: RetryPolicy | None = None, cache_seconds: float = 2.0,
                 max_subscriptions: int | None = None,
                 before_mark: Callable[[str, Sequence[int]], None] | None = None,
                 resume_policy: ResumePolicy | None = None,
                 schema_base: str = DEFAULT_SCHEMA_BASE) -> None:
        self.events = events
        self.max_subscriptions = max_subscriptions  # API subscriptions per tenant (None: no limit)
        self._subscribing = threading.Lock()
        self.catalog = SubscriptionCatalog(subscriptions, definitions=definitions, static=static,
                                           tenant_config=tenant_config, cache_seconds=cache_seconds)
        self.webhook = webhook or WebhookPublisher(origin=origin, timeout=webhook_timeout, tokens=tokens,
                                                   allow_private_destinations=allow_private_destinations)
        self.mapper = CloudEventMapper(events, schema_base=schema_base)
        self.dispatcher = Dispatcher(events, self.catalog, webhook=self.webhook, eventgrid=eventgrid,
                                     mapper=self.mapper, max_workers=max_workers, pause_after=pause_after,
                                     lane_concurrency=lane_concurrency, tenant_concurrency=tenant_concurrency,
                                     retry=retry, before_mark=before_mark, resume_policy=resume_policy)
        self.sweeper = Sweeper(self.dispatcher, tenants, grace_seconds=grace_seconds)

    # -------------------------------------------------------------------------------------- hosting

    @property
    def on_commit(self) -> Dispatcher:
        """Pass this as the engine's `on_commit`."""
        return self.dispatcher

    def start(self, *, sweep_interval: float = 10.0) -> None:
        self.sweeper.start(sweep_interval)

    def close(self, timeout: float = 5.0) -> None:
        self.sweeper.stop()
        self.dispatcher.close(timeout)
        self.webhook.close()
        closer = getattr(self.dispatcher._eventgrid, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()
        self.catalog.store.close()

    # -------------------------------------------------------------------------------------- pull feed

    def read(self, tenant: str, *, after: int = 0, limit: int = 100) -> FeedPage:
        """Commits after feed position `after` (at most `limit` commits: a commit's events are never split)."""
        commits = self.events.read_feed(tenant, after=max(0, after), limit=limit)
        events = [event for group in self.mapper.page(tenant, commits) for event in group]
        following = commits[-1].position if commits and commits[-1].position is not None else max(0, after)
        return FeedPage(events, following, len(commits))

    # -------------------------------------------------------------------------------------- subscriptions

    def subscriptions(self, tenant: str) -> list[Subscription]:
        return self.catalog.list(tenant)

    def subscription(self, tenant: str, name: str) -> Subscription:
        return self.catalog.get(tenant, name, fresh=True)

    def subscribe(self, tenant: str, name: str, *, endpoint: str, types: Iterable[str] | None = None,
                  secret: str | None = None, mode: str = "structured",
                  auth_audience: str | None = None) -> tuple[Subscription, bool]:
        """Create or replace the API subscription `name`; (subscription, created). A new or changed endpoint, or
        one still pending, goes through the handshake: it is active only if it consents. Raises
        InvalidSubscription, DestinationRefused or TooManySubscriptions (nothing stored)."""
        if not NAME_PATTERN.match(name):
            raise InvalidSubscription(name, ["a subscription name is 1 to 63 letters, digits, '.', '_' or '-', "
                                             "starting with a letter or digit"])
        try:
            chosen_types = check_types(types)
            chosen_mode = Mode(mode)
        except InvalidSubscription as e:
            raise InvalidSubscription(name, e.problems) from None
        except ValueError:
            raise InvalidSubscription(name, [f"mode must be 'structured' or 'binary', not {mode!r}"]) from None
        self.webhook.check_destination(endpoint)
        spec = Subscription(name=name, endpoint=endpoint, types=chosen_types, secret=secret, mode=chosen_mode,
                            auth_audience=auth_audience)
        with self._subscribing:  # in this process, two creations cannot both take the last place
            existing = self.catalog.store.get(tenant, name)
            if existing is None and self.max_subscriptions is not None and (
                    len(self.catalog.store.list(tenant)) >= self.max_subscriptions):
                raise TooManySubscriptions(tenant, name, self.max_subscriptions)
            if existing is not None and existing.endpoint == endpoint and existing.status is not PENDING:
                return self.catalog.save(tenant, existing.with_spec_of(spec)), False
            base = spec if existing is None else dataclasses.replace(existing.with_spec_of(spec), status=PENDING,
                                                                     consecutive_failures=0)
            stored = self.catalog.save(tenant, base)
        return shake_hands(self.catalog, self.webhook, tenant, stored), existing is None

    def unsubscribe(self, tenant: str, name: str) -> None:
        self.catalog.delete(tenant, name)

    def pause(self, tenant: str, name: str) -> Subscription:
        """Paused by hand: it stays paused (no automatic resume) until `resume`."""
        subscription = self.catalog.get(tenant, name, fresh=True)
        at = self.catalog.timestamp()
        paused = self.catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
            s, status=PAUSED, paused_at=at, resume_at=None, pauses=0) if s.status is ACTIVE else s)
        if paused.status is PAUSED and subscription.status is ACTIVE:
            signal(PAUSED_SIGNAL, tenant, paused, "by hand; it waits for a resume")
        return paused

    def resume(self, tenant: str, name: str) -> Subscription:
        """Back to active (a webhook shakes hands again first); then its backlog is delivered in the background."""
        subscription = self.catalog.get(tenant, name, fresh=True)
        return resume(self.catalog, self.webhook, tenant, subscription, automatic=False,
                      policy=self.dispatcher.resume_policy, catch_up=self.dispatcher.catch_up)

    def attention(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's subscriptions that are paused or gone (for /readyz and the dashboard's banner)."""
        return needs_attention(self.catalog.list(tenant))
