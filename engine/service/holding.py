"""Holding commands through an outage, and the per-tenant circuit breaker.

An engine whose storage is down must hold its work, not shed it (the seed ADR's "Faulting the WorkflowEngine").
When a command fails with `StoreUnavailable`, it is *held*: put back on the queue with a growing delay and an
attempt count — a copy is sent with a visibility delay (Azure Storage) or a not-before time (the SQLite queue's
`visible_at`), then the original is completed — for as long as `HoldPolicy.hold_seconds` (hours by default). The
queue's dequeue count never grows while a command is held, so an outage never sends anything to the poison queue.
Only past the hold (or when it can never succeed) is a command parked (engine/service/parked.py).

The body of a held copy carries `"hold": {"attempt", "since", "lastError"}`; nothing else of it changes, and
`from_message` ignores the key, so a held command is processed exactly as it was sent (its trigger id keeps a copy
delivered twice idempotent).

`CircuitBreakers` keeps one breaker per tenant, in the process: after `threshold` consecutive `StoreUnavailable`
of a tenant it *opens* for a cool-down (doubling while the store stays down, up to `max_cooldown`); while open,
that tenant's commands are held at once without touching its store. When the cool-down ends one command is let
through as a probe (*half-open*): a success closes the breaker, a failure opens it again. Every change is logged,
counted (OpenTelemetry metrics `waymark.breaker.transitions`, `waymark.commands.held`; gauge `waymark.breaker.open`)
and shown by `GET /readyz` (`states()`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import metrics

from engine.domain import StoreUnavailable, timestamp

__all__ = ["HOLD_KEY", "BreakerState", "CircuitBreakers", "Hold", "HoldPolicy", "held_body", "hold_of"]

log = logging.getLogger("waymark.holding")

HOLD_KEY = "hold"


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """How a command is held through an outage: delays `base_delay`·2^(attempt-1) (±10 % jitter) up to
    `max_delay`, for at most `hold_seconds` after its first failure."""

    base_delay: float = 2.0
    max_delay: float = 300.0
    hold_seconds: float = 24 * 3600.0

    def delay(self, attempt: int) -> float:
        raw = min(self.max_delay, self.base_delay * 2 ** max(0, min(attempt - 1, 40)))
        return max(0.0, raw * random.uniform(0.9, 1.1))


@dataclass(frozen=True, slots=True)
class Hold:
    """What a held command's body says: how many times it was held and since when (None: never held)."""

    attempt: int = 0
    since: str | None = None

    def expired(self, policy: HoldPolicy, now: datetime) -> bool:
        if self.since is None:
            return False
        try:
            started = datetime.fromisoformat(self.since)
        except ValueError:
            return False
        return now - started > timedelta(seconds=policy.hold_seconds)


def hold_of(body: Mapping[str, Any]) -> Hold:
    doc = body.get(HOLD_KEY)
    if not isinstance(doc, Mapping):
        return Hold()
    attempt = doc.get("attempt")
    since = doc.get("since")
    return Hold(attempt if isinstance(attempt, int) and attempt >= 0 else 0, since if isinstance(since, str) else None)


def held_body(body: Mapping[str, Any], error: StoreUnavailable, now: datetime) -> dict[str, Any]:
    """The body of the held copy: the command unchanged, its hold one attempt further."""
    hold = hold_of(body)
    return {**body, HOLD_KEY: {"attempt": hold.attempt + 1, "since": hold.since or timestamp(now),
                               "lastError": f"the {error.store} is unavailable"}}


# ---------------------------------------------------------------------------------------------- breakers

@dataclass
class BreakerState:
    state: str = "closed"  # closed, open, half-open
    failures: int = 0  # consecutive
    cooldown: float = 0.0
    opened_at: float = 0.0  # monotonic
    until: float = 0.0  # monotonic: when the next probe may go
    since: str | None = None  # when it opened (RFC 3339)
    store: str | None = None  # which store failed
    held: int = 0  # commands held while open
    probing: bool = False


@dataclass
class _Instruments:
    held: Any
    transitions: Any


class CircuitBreakers:
    """One breaker per tenant (see the module docstring). Thread-safe."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 5.0, max_cooldown: float = 300.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 meter: metrics.Meter | None = None) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold}")
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max(max_cooldown, cooldown)
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._tenants: dict[str, BreakerState] = {}
        meter = meter or metrics.get_meter("waymark")
        self._instruments = _Instruments(
            held=meter.create_counter("waymark.commands.held", unit="{command}",
                                      description="Commands put back on the queue with a delay (outage, breaker)"),
            transitions=meter.create_counter("waymark.breaker.transitions", unit="{transition}",
                                             description="Circuit breaker state changes, by tenant and new state"))
        meter.create_observable_gauge("waymark.breaker.open", callbacks=[self._observe], unit="1",
                                      description="1 while the tenant's circuit breaker is open or half-open")

    def retry_in(self, tenant: str) -> float | None:
        """None: go ahead (closed, or this caller is the half-open probe); else seconds to hold the command for."""
        with self._lock:
            breaker = self._tenants.get(tenant)
            if breaker is None or breaker.state == "closed":
                return None
            now = self.clock()
            if breaker.state == "open" and now >= breaker.until:
                self._move(tenant, breaker, "half-open")
            if breaker.state == "half-open" and not breaker.probing:
                breaker.probing = True
                return None
            breaker.held += 1
            return max(breaker.until - now, 0.0) or breaker.cooldown

    def failure(self, tenant: str, error: StoreUnavailable) -> None:
        with self._lock:
            breaker = self._tenants.setdefault(tenant, BreakerState())
            breaker.failures += 1
            breaker.store = error.store
            breaker.probing = False
            now = self.clock()
            if breaker.state == "half-open":
                breaker.cooldown = min(self.max_cooldown, breaker.cooldown * 2)
                breaker.until = now + breaker.cooldown
                self._move(tenant, breaker, "open")
            elif breaker.state == "closed" and breaker.failures >= self.threshold:
                breaker.cooldown = self.cooldown
                breaker.until = now + breaker.cooldown
                breaker.opened_at = now
                breaker.since = timestamp(self.wall_clock())
                self._move(tenant, breaker, "open")

    def success(self, tenant: str) -> None:
        with self._lock:
            breaker = self._tenants.get(tenant)
            if breaker is None:
                return
            if breaker.state != "closed":
                self._move(tenant, breaker, "closed")
            del self._tenants[tenant]

    def count_held(self, tenant: str, *, why: str) -> None:
        self._instruments.held.add(1, {"waymark.tenant": tenant, "waymark.why": why})

    def states(self) -> dict[str, dict[str, Any]]:
        """The breakers that are not closed, by tenant (for /readyz and the dashboard)."""
        with self._lock:
            now = self.clock()
            return {tenant: {"state": b.state, "since": b.since, "store": b.store, "consecutiveFailures": b.failures,
                             "retryInSeconds": round(max(b.until - now, 0.0), 1), "held": b.held}
                    for tenant, b in sorted(self._tenants.items()) if b.state != "closed"}

    def is_closed(self, tenant: str) -> bool:
        """Whether the tenant's commands go ahead without asking (no breaker open or probing); changes nothing."""
        with self._lock:
            breaker = self._tenants.get(tenant)
            return breaker is None or breaker.state == "closed"

    def _move(self, tenant: str, breaker: BreakerState, state: str) -> None:
        previous, breaker.state = breaker.state, state
        self._instruments.transitions.add(1, {"waymark.tenant": tenant, "waymark.state": state})
        fields = {"tenant": tenant, "breaker": state}
        if state == "open":
            log.warning("circuit breaker open for tenant %r: the %s is unavailable (%d consecutive failures); its "
                        "commands are held, next probe in %.0f s", tenant, breaker.store, breaker.failures,
                        breaker.cooldown, extra=fields)
        elif state == "closed":
            log.warning("circuit breaker closed for tenant %r after %.0f s: its store answers again (%d command(s) "
                        "held meanwhile)", tenant, self.clock() - breaker.opened_at, breaker.held, extra=fields)
        else:
            log.info("circuit breaker half-open for tenant %r (was %s): one command probes the store", tenant,
                     previous, extra=fields)

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            return [metrics.Observation(0 if b.state == "closed" else 1, {"waymark.tenant": tenant})
                    for tenant, b in self._tenants.items()]
