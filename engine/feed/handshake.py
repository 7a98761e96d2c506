"""A webhook subscription's handshake (CloudEvents' abuse protection): the endpoint consents, or the subscription
stays pending with why. Run when a subscription is put, when a pending one is retried, and before a paused one
resumes (engine/feed/pausing.py). `PendingHandshakes`: a definition's or the configuration's webhook shakes hands when
its first delivery needs it, and again at most every so often while it is refused."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from engine.feed.catalog import SubscriptionCatalog
from engine.feed.subscriptions import Kind, Source, Subscription, SubscriptionStatus
from engine.feed.webhook import WebhookPublisher

__all__ = ["PendingHandshakes", "shake_hands"]

log = logging.getLogger("waymark.feed")

ACTIVE, PENDING = SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING


def shake_hands(catalog: SubscriptionCatalog, webhook: WebhookPublisher, tenant: str,
                subscription: Subscription) -> Subscription:
    """Run the abuse-protection handshake; store the outcome (active, or pending with why)."""
    handshake = webhook.handshake(subscription.endpoint, audience=subscription.auth_audience)
    at = catalog.timestamp()
    if handshake.consented:
        log.info("subscription %s is active: %s", subscription.name, handshake.detail, extra={"tenant": tenant})
        return catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
            s, status=ACTIVE, consecutive_failures=0, last_error=None, last_error_at=None))
    log.warning("subscription %s stays pending: %s", subscription.name, handshake.detail, extra={"tenant": tenant})
    return catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
        s, status=PENDING, last_error=handshake.detail, last_error_at=at))


class PendingHandshakes:
    """The handshakes the deliveries of pending webhooks run: one at a time per subscription (the deliveries that
    wait for it then see its outcome), retried at most every `retry_seconds` while it is refused."""

    def __init__(self, catalog: SubscriptionCatalog, webhook: WebhookPublisher, *, retry_seconds: float,
                 monotonic: Callable[[], float]) -> None:
        self.catalog = catalog
        self.webhook = webhook
        self.retry_seconds = retry_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def try_(self, tenant: str, subscription: Subscription) -> Subscription:
        """A definition's or the configuration's webhook is registered the first time it is needed: the
        handshake runs then, and is retried at most every `retry_seconds` while it is refused. API
        subscriptions shake hands when they are PUT or resumed."""
        if subscription.kind is not Kind.WEBHOOK or subscription.source is Source.API:
            return subscription
        key = (tenant, subscription.name)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            current = self.catalog.current(tenant, subscription) or subscription
            if current.status is not PENDING:
                return current
            now = self.monotonic()
            last = self._last.get(key)
            if last is not None and now - last < self.retry_seconds:
                return current
            self._last[key] = now
            return shake_hands(self.catalog, self.webhook, tenant, current)
