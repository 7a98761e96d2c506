"""Readiness checks of the engine's own state (beside engine/api/health.py's storage checks): the tenants whose
circuit breaker holds their commands, and the change-feed subscriptions that are paused. They report, they do not
fail: one tenant's storage or subscriber being down leaves the process ready for every other tenant, so a load
balancer must not take it out of rotation for that."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["breakers_check", "feed_check"]

MAX_TENANTS = 20


def breakers_check(ctx: ApiContext) -> Mapping[str, Any]:
    """`{"open": {tenant: {state, since, store, consecutiveFailures, retryInSeconds, held}}, "degraded": bool}`."""
    states = ctx.engine.breakers.states()
    return {"open": states, "degraded": bool(states)}


def feed_check(ctx: ApiContext) -> Mapping[str, Any]:
    """The change-feed subscriptions that are paused or gone, by tenant (the first MAX_TENANTS tenants):
    `{"paused": {tenant: [{name, kind, status, pausedAt, resumeAt, pauses, lastError, backlogFrom}]}, "degraded"}`.
    Nothing is lost while a subscription is paused (what it is owed is kept), so this reports, it does not fail."""
    attention = ctx.engine.feed_attention
    if attention is None:
        return {"paused": {}, "degraded": False}
    found = {}
    for record in ctx.tenants.list()[:MAX_TENANTS]:
        if record.config.get("provisioning"):
            continue
        listed = attention(record.id)
        if listed:
            found[record.id] = listed
    return {"paused": found, "degraded": bool(found)}
