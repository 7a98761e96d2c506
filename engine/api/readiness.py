"""Readiness checks of the engine's own state (beside engine/api/health.py's storage checks): the tenants whose
circuit breaker holds their commands. They report, they do not fail: one tenant's storage being down leaves the
process ready for every other tenant, so a load balancer must not take it out of rotation for that."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["breakers_check"]


def breakers_check(ctx: ApiContext) -> Mapping[str, Any]:
    """`{"open": {tenant: {state, since, store, consecutiveFailures, retryInSeconds, held}}, "degraded": bool}`."""
    states = ctx.engine.breakers.states()
    return {"open": states, "degraded": bool(states)}
