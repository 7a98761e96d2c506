"""A subscription that keeps failing is paused, and resumes by itself.

After `pause_after` consecutive failed deliveries a subscription is *paused*: what it should get is owed from
`backlogFrom` on (the outbox keeps it; nothing is dropped). A pause made by failures — a webhook that is down, an
Event Grid topic whose role assignment is still propagating, an event it refuses — carries `resumeAt`: the sweeper
resumes it then (a webhook shakes hands again first) and its backlog is delivered. If it fails again it is paused
again, each time twice as long (`ResumePolicy`: from `after` up to `maximum`); the first delivery that succeeds
ends the streak. A subscription paused by hand (`POST …/pause`) has no `resumeAt` and waits for `…/resume`.

Each pause and resume is a *signal* an operator sees: a log line (`io.waymark.feed.paused`,
`io.waymark.feed.resumed`, with the tenant and the subscription), the subscription's state in the API
(`status`, `pausedAt`, `resumeAt`, `pauses`), `GET /readyz` (`checks.feed`) and a banner on the dashboard.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.domain import timestamp
from engine.feed.catalog import SubscriptionCatalog
from engine.feed.handshake import shake_hands
from engine.feed.subscriptions import Kind, Subscription, SubscriptionStatus
from engine.feed.webhook import WebhookPublisher

__all__ = ["PAUSED_SIGNAL", "RESUMED_SIGNAL", "ResumePolicy", "needs_attention", "paused_by_failures",
           "resume", "signal"]

log = logging.getLogger("waymark.feed")

PAUSED_SIGNAL = "io.waymark.feed.paused"
RESUMED_SIGNAL = "io.waymark.feed.resumed"
ACTIVE, PAUSED, GONE = SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.GONE


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """The n-th pause in a row lasts `after`·2^(n-1) seconds, at most `maximum`."""

    after: float = 60.0
    maximum: float = 3600.0

    def delay(self, pauses: int) -> float:
        return min(self.maximum, self.after * 2 ** max(0, min(pauses - 1, 40)))


def paused_by_failures(subscription: Subscription, at: str, policy: ResumePolicy) -> Subscription:
    """The subscription paused now because it kept failing: when to resume it, and how many pauses in a row."""
    pauses = subscription.pauses + 1
    resume_at = timestamp(datetime.fromisoformat(at) + timedelta(seconds=policy.delay(pauses)))
    return dataclasses.replace(subscription, status=PAUSED, paused_at=at, resume_at=resume_at, pauses=pauses)


def signal(kind: str, tenant: str, subscription: Subscription, detail: str) -> None:
    """An operator's signal: a log line whose `signal` field is the event type (and the subscription's state holds
    the rest, for the API, /readyz and the dashboard)."""
    level = logging.WARNING if kind == PAUSED_SIGNAL else logging.INFO
    log.log(level, "%s: subscription %s of tenant %s %s", kind, subscription.name, tenant, detail,
            extra={"tenant": tenant, "subscription": subscription.name, "signal": kind})


def resume(catalog: SubscriptionCatalog, webhook: WebhookPublisher, tenant: str, subscription: Subscription, *,
           automatic: bool, policy: ResumePolicy, catch_up: Callable[[str, Subscription], object]) -> Subscription:
    """Back to active (a webhook shakes hands again first), then its backlog is delivered in the background
    (`catch_up`: the dispatcher's). Refused by the handshake, an automatic resume pauses again, for longer."""
    if subscription.status is ACTIVE and subscription.backlog_from is None:
        return subscription
    if subscription.kind is Kind.WEBHOOK and subscription.status is not ACTIVE:
        resumed = shake_hands(catalog, webhook, tenant, subscription)
    else:
        resumed = catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
            s, status=ACTIVE, consecutive_failures=0, last_error=None, last_error_at=None))
    if resumed.status is ACTIVE:
        resumed = catalog.modify(tenant, resumed, lambda s: dataclasses.replace(s, resume_at=None))
        owed = f"; delivering what it is owed from position {resumed.backlog_from}" if resumed.backlog_from else ""
        signal(RESUMED_SIGNAL, tenant, resumed, ("resumed by itself after its pause" if automatic
                                                  else "resumed by hand") + owed)
        if resumed.backlog_from is not None:
            catch_up(tenant, resumed)
    elif automatic:  # the handshake is refused: try again after the next, longer, pause
        again = paused_by_failures(dataclasses.replace(resumed, status=PAUSED), catalog.timestamp(),
                                   policy)
        resumed = catalog.modify(tenant, resumed, lambda s: dataclasses.replace(
            s, status=PAUSED, paused_at=again.paused_at, resume_at=again.resume_at, pauses=again.pauses))
    return resumed


def needs_attention(subscriptions: list[Subscription]) -> list[dict[str, Any]]:
    """The subscriptions an operator should know about: paused (by failures or by hand) or gone."""
    return [{"name": s.name, "kind": str(s.kind), "status": str(s.status), "pausedAt": s.paused_at,
             "resumeAt": s.resume_at, "pauses": s.pauses, "lastError": s.last_error, "backlogFrom": s.backlog_from}
            for s in subscriptions if s.status in (PAUSED, GONE)]
