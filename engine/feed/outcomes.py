"""What a delivery does to its subscription: the outcome for the commit, and the subscription's state after it
(its failure streak, a pause when the streak reaches `pause_after`, gone on a 410, what it is owed)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from enum import StrEnum

from engine.feed.catalog import SubscriptionCatalog
from engine.feed.lanes import LaneKey
from engine.feed.pausing import PAUSED_SIGNAL, ResumePolicy, paused_by_failures, signal
from engine.feed.subscriptions import Subscription, SubscriptionStatus
from engine.feed.webhook import DeliveryResult

log = logging.getLogger("waymark.feed")

ACTIVE, PAUSED, GONE = SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.GONE


class Outcome(StrEnum):
    DELIVERED = "delivered"
    OWED = "owed"  # the subscription is paused: it gets the commit when it catches up
    SKIPPED = "skipped"  # pending, gone or deleted: owed nothing
    FAILED = "failed"  # the commit stays undispatched for the sweeper


def owe(subscription: Subscription, position: int) -> Subscription:
    """The subscription owed the commit at `position` too (its backlog starts there at the latest)."""
    backlog = position if subscription.backlog_from is None else min(subscription.backlog_from, position)
    return dataclasses.replace(subscription, backlog_from=backlog)


class Accounting:
    """Records each delivery's last attempt in its subscription's state. Remembers which subscriptions failed lately
    in this process, so that a success after them clears a streak the catalog's (cached) read may not show yet."""

    def __init__(self, catalog: SubscriptionCatalog, *, pause_after: int, resume_policy: ResumePolicy) -> None:
        self.catalog = catalog
        self.pause_after = pause_after
        self.resume_policy = resume_policy
        self._lock = threading.Lock()
        self._failed_lately: set[LaneKey] = set()  # subscriptions whose last delivery failed (in this process)

    def account(self, tenant: str, subscription: Subscription, result: DeliveryResult, position: int) -> Outcome:
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
            return Outcome.DELIVERED
        if result.gone:
            return self._gone(tenant, subscription, result.error or "delivery failed")
        return self._failed(tenant, subscription, result.error or "delivery failed", position)

    def _gone(self, tenant: str, subscription: Subscription, error: str) -> Outcome:
        at = self.catalog.timestamp()
        self.catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
            s, status=GONE, last_error=error, last_error_at=at, backlog_from=None))
        log.warning("subscription %s is gone (410); it gets no more events until resumed", subscription.name,
                    extra={"tenant": tenant})
        return Outcome.SKIPPED

    def _failed(self, tenant: str, subscription: Subscription, error: str, position: int) -> Outcome:
        at = self.catalog.timestamp()

        def failed(s: Subscription) -> Subscription:
            failures = s.consecutive_failures + 1
            changed = dataclasses.replace(s, consecutive_failures=failures, last_error=error, last_error_at=at)
            if s.status is ACTIVE and failures >= self.pause_after:  # paused now; it resumes by itself later
                changed = paused_by_failures(changed, at, self.resume_policy)
            return owe(changed, position) if changed.status is PAUSED else changed

        changed = self.catalog.modify(tenant, subscription, failed)
        if changed.status is PAUSED:
            if subscription.status is ACTIVE and changed.paused_at == at:
                signal(PAUSED_SIGNAL, tenant, changed, f"after {changed.consecutive_failures} consecutive failures "
                       f"({error}); what it is owed is kept, and it resumes by itself at {changed.resume_at}")
            return Outcome.OWED
        log.info("delivery to %s failed (%d in a row): %s", subscription.name, changed.consecutive_failures, error,
                 extra={"tenant": tenant, "position": position})
        return Outcome.FAILED
