"""The sweeper: what the outbox's live path did not finish, published again.

It republishes commits still undispatched after a grace period (a crash between append and mark, a failed
delivery, a full lane), restarts the catch-up of resumed subscriptions whose process died (and resumes those whose
pause is over), and, on Cosmos, repairs the instance index. Run it once per timer tick (`sweep_once`) or as a thread
(`start`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.domain import timestamp
from engine.feed.outbox import Dispatcher
from engine.feed.pausing import resume
from engine.feed.subscriptions import SubscriptionStatus

__all__ = ["SweepReport", "Sweeper"]

log = logging.getLogger("waymark.feed")

ACTIVE, PAUSED = SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED


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
        waiting: list[threading.Event] = []
        catch_ups = repaired = 0
        for tenant in list(self.tenants()):
            repaired += self._repair(tenant)
            try:
                waiting.extend(self._republish(tenant, cutoff))
                for started in self._restart_catch_ups(tenant, now):
                    catch_ups += started
            except Exception:
                log.exception("sweeping tenant %s failed; the next sweep tries again", tenant)
        unfinished = _unfinished(waiting, wait)
        if waiting:
            log.info("sweep republished %d commit(s), %d not finished yet", len(waiting), unfinished)
        if repaired:
            log.info("sweep brought %d commit(s) into the instance index", repaired)
        return SweepReport(len(waiting), unfinished, catch_ups, repaired)

    def _repair(self, tenant: str) -> int:
        """The store's index repair, where it has one (Cosmos); how many commits it indexed."""
        repair = getattr(self.dispatcher.store, "repair_index", None)
        if not callable(repair):
            return 0
        try:
            return int(repair(tenant, limit=self.batch))
        except Exception:
            log.exception("repairing the instance index of tenant %s failed; the next sweep tries again", tenant)
            return 0

    def _republish(self, tenant: str, cutoff: str) -> Iterator[threading.Event]:
        """Submit the tenant's commits undispatched since before `cutoff` again, skipping the subscriptions they
        reached already; for each, an event set when it is done with."""
        dispatcher = self.dispatcher
        for commit in dispatcher.store.undispatched(tenant, committed_before=cutoff, limit=self.batch):
            assert commit.position is not None
            skip = dispatcher.catalog.store.deliveries(tenant, commit.position)
            done = dispatcher.submit(tenant, commit, skip=skip)
            if done is not None:
                yield done

    def _restart_catch_ups(self, tenant: str, now: str) -> Iterator[bool]:
        """Resume the subscriptions whose pause is over, and (re)start the catch-up of every active one owed a
        backlog; for each of those, whether its catch-up started."""
        dispatcher = self.dispatcher
        for subscription in dispatcher.catalog.list(tenant):
            if subscription.status is PAUSED and subscription.resume_at and subscription.resume_at <= now:
                subscription = resume(dispatcher.catalog, dispatcher.webhook, tenant, subscription,
                                      automatic=True, policy=dispatcher.resume_policy,
                                      catch_up=dispatcher.catch_up)
            if subscription.status is ACTIVE and subscription.backlog_from is not None:
                yield dispatcher.catch_up(tenant, subscription)

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


def _unfinished(waiting: Iterable[threading.Event], wait: float) -> int:
    """How many of these are not set within `wait` seconds (all waited for together)."""
    deadline = time.monotonic() + wait
    unfinished = 0
    for done in waiting:
        if not done.wait(max(0.0, deadline - time.monotonic())):
            unfinished += 1
    return unfinished
