"""A resumed subscription's catch-up: what it is owed, read from the feed from its `backlog_from` on and delivered in
its own lane, filtered as usual, page by page. The backlog moves forward as it goes (so a catch-up cut short resumes
where it stopped: the sweeper restarts it); a failed attempt is retried after its backoff without holding a thread.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Sequence

from cloudevents.core.base import BaseCloudEvent

from engine.feed.catalog import SubscriptionCatalog
from engine.feed.cloudevents import CloudEventMapper
from engine.feed.lanes import LaneKey, Lanes
from engine.feed.outcomes import Accounting, Outcome
from engine.feed.subscriptions import Subscription, SubscriptionStatus
from engine.feed.webhook import DeliveryResult
from engine.stores.base import EventStore

log = logging.getLogger("waymark.feed")

ACTIVE = SubscriptionStatus.ACTIVE


class CatchUps:
    """The catch-ups running in this process, one at most per subscription. `idle` is the dispatcher's condition
    (its lock guards the running set; it is notified when one ends, for `drain`)."""

    def __init__(self, *, store: EventStore, catalog: SubscriptionCatalog, mapper: CloudEventMapper, lanes: Lanes,
                 accounting: Accounting, publish: Callable[[Subscription, Sequence[BaseCloudEvent]], DeliveryResult],
                 next_attempt: Callable[[DeliveryResult, int], tuple[float | None, DeliveryResult]],
                 later: Callable[[float, LaneKey, Callable[[], None]], bool], page: int,
                 idle: threading.Condition, closed: Callable[[], bool]) -> None:
        self.store = store
        self.catalog = catalog
        self.mapper = mapper
        self.lanes = lanes
        self.accounting = accounting
        self.publish = publish
        self.next_attempt = next_attempt
        self.later = later
        self.page = page
        self._idle = idle
        self._closed = closed
        self._running: set[tuple[str, str]] = set()

    @property
    def running(self) -> bool:
        """Whether a catch-up is running (read under the dispatcher's lock)."""
        return bool(self._running)

    def start(self, tenant: str, subscription: Subscription) -> bool:
        """Deliver a resumed subscription's backlog in its lane. False if one is already running here."""
        key = (tenant, subscription.name)
        with self._idle:
            if self._closed() or key in self._running:
                return False
            self._running.add(key)
        if not self.lanes.push(key, lambda: self._catch_up(tenant, subscription)):
            self._caught_up(key)
            return False
        return True

    def _catch_up(self, tenant: str, spec: Subscription, attempt: int = 1) -> None:
        key = (tenant, spec.name)
        again = False
        try:
            while True:
                subscription = self.catalog.current(tenant, spec)
                if subscription is None or subscription.status is not ACTIVE or subscription.backlog_from is None:
                    return
                start = subscription.backlog_from
                commits = self.store.read_feed(tenant, after=start - 1, limit=self.page)
                wanted = [c for c in commits if subscription.selects(c.state.workflow_id)]
                for commit, events in zip(wanted, self.mapper.page(tenant, wanted), strict=True):
                    chosen = [event for event in events if subscription.wants(event.get_type())]
                    if not chosen:
                        continue
                    current = self.catalog.current(tenant, spec)
                    if current is None or current.status is not ACTIVE:
                        return
                    assert commit.position is not None
                    result = self.publish(current, chosen)
                    self.lanes.attempted(key, result.ok)
                    delay, result = self.next_attempt(result, attempt)
                    if delay is not None:  # resume here after the backoff, without holding the thread meanwhile
                        self._advance(tenant, current, start, commit.position)
                        again = self.later(delay, key, functools.partial(self._catch_up, tenant, spec, attempt + 1))
                        return
                    attempt = 1
                    if self.accounting.account(tenant, current, result, commit.position) is not Outcome.DELIVERED:
                        self._advance(tenant, current, start, commit.position)  # resume here next time
                        return
                finished = len(commits) < self.page
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
            self._running.discard(key)
            self._idle.notify_all()
