"""A webhook subscription's handshake (CloudEvents' abuse protection): the endpoint consents, or the subscription
stays pending with why. Run when a subscription is put, when a pending one is retried, and before a paused one
resumes (engine/feed/pausing.py)."""

from __future__ import annotations

import dataclasses
import logging

from engine.feed.subscriptions import Subscription, SubscriptionCatalog, SubscriptionStatus
from engine.feed.webhook import WebhookPublisher

__all__ = ["shake_hands"]

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
