"""Holding an outage and the per-tenant circuit breaker, on the memory adapters: which failure is held, parked or
left to the queue; the breaker's states, its log lines and its metrics."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from engine.domain import StoreUnavailable, Trigger
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance, MalformedCommand, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.failures import CommandFailures
from engine.service.holding import CircuitBreakers, HoldPolicy, held_body, hold_of

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OUTAGE = StoreUnavailable("cosmos", "connection refused by 10.0.0.7")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _engine() -> Engine:
    engine = memory_engine()
    engine.catalog.put("acme", json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance("acme", "c1", "expense-claim", "create", context={"claimant": "Ann"}))
    return engine


def _trigger(n: int = 1, tenant: str = "acme") -> dict[str, Any]:
    return to_message(SendTrigger(tenant, "c1", Trigger("update", f"t-{n}", {"amount": n})))


def test_hold_delays_grow_to_the_maximum() -> None:
    policy = HoldPolicy(base_delay=2, max_delay=60, hold_seconds=3600)
    delays = [policy.delay(attempt) for attempt in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        assert min(60, 2 * 2 ** (attempt - 1)) * 0.9 <= delay <= min(60, 2 * 2 ** (attempt - 1)) * 1.1


def test_a_held_body_is_the_command_with_its_hold_one_attempt_further() -> None:
    body = _trigger()
    first = held_body(body, OUTAGE, NOW)
    second = held_body(first, OUTAGE, NOW + timedelta(minutes=5))
    assert {k: v for k, v in second.items() if k != "hold"} == body
    assert second["hold"] == {"attempt": 2, "since": "2026-03-01T12:00:00.000000Z",
                              "lastError": "the cosmos is unavailable"}  # the driver's text is not carried
    assert hold_of(second).expired(HoldPolicy(hold_seconds=60), NOW + timedelta(minutes=2))
    assert not hold_of(second).expired(HoldPolicy(hold_seconds=600), NOW + timedelta(minutes=2))
    assert hold_of(body).attempt == 0 and not hold_of(body).expired(HoldPolicy(hold_seconds=0), NOW)


def test_an_outage_is_held_never_parked_until_the_hold_ends() -> None:
    engine = _engine()
    failures = engine.failures
    body = _trigger()
    assert failures.failed(body, OUTAGE, dequeue_count=1, message_id="m-1") is True
    assert engine.queue.receive(visibility_timeout=30) == [] and engine.queue.depth() == 1  # a delayed copy
    assert engine.parked.list("acme").items == []
    # Past the hold it is parked, with how long it was held.
    old = {**body, "hold": {"attempt": 40, "since": "2020-01-01T00:00:00.000000Z"}}
    assert failures.failed(old, OUTAGE, dequeue_count=1, message_id="m-2") is True
    [parked] = engine.parked.list("acme").items
    assert (parked.reason, parked.delivery_count, parked.first_failure_at) == ("hold-expired", 41,
                                                                               "2020-01-01T00:00:00.000000Z")
    assert "longer than the hold" in parked.detail and "10.0.0.7" not in parked.detail


def test_what_can_never_succeed_is_parked_and_other_failures_are_left_to_the_queue() -> None:
    engine = _engine()
    failures = engine.failures
    malformed = {"kind": "teleport", "tenant": "acme", "instanceId": "c1"}
    assert failures.failed(malformed, ValueError("x"), dequeue_count=1) is False  # not a known failure: retried
    assert failures.failed(malformed, MalformedCommand("unknown command kind 'teleport'"), dequeue_count=1,
                           message_id="m-9") is True
    bug = RuntimeError("division by zero in the processor")
    assert failures.failed(_trigger(2), bug, dequeue_count=4) is False
    assert failures.failed(_trigger(2), bug, dequeue_count=5, message_id="m-10") is True  # its last delivery
    reasons = {c.id: (c.reason, c.error_type) for c in engine.parked.list("acme").items}
    assert reasons == {"m-9": ("malformed", "MalformedCommand"), "m-10": ("failed", "RuntimeError")}
    # A command naming no tenant cannot be parked anywhere: the queue keeps it (and poisons it in the end).
    assert failures.failed({"kind": "trigger"}, MalformedCommand("no tenant"), dequeue_count=5) is False


def test_a_failure_to_hold_leaves_the_command_to_the_queue() -> None:
    engine = _engine()

    def queue_down(body: Any, delay: float) -> None:
        raise StoreUnavailable("command queue", "gone")

    failures = CommandFailures(engine.parked, engine.breakers, queue_down)
    assert failures.failed(_trigger(), OUTAGE, dequeue_count=1) is False


def test_the_breaker_opens_holds_probes_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    reader = InMemoryMetricReader()
    breakers = CircuitBreakers(threshold=3, cooldown=5, max_cooldown=20, clock=clock,
                               meter=MeterProvider(metric_readers=[reader]).get_meter("test"))
    with caplog.at_level(logging.INFO, logger="waymark"):
        for _ in range(2):
            breakers.failure("acme", OUTAGE)
            assert breakers.retry_in("acme") is None  # closed until the threshold
        breakers.failure("acme", OUTAGE)
        assert breakers.retry_in("acme") == 5 and not breakers.is_closed("acme")
        assert breakers.retry_in("beta") is None  # another tenant is not held back
        state = breakers.states()["acme"]
        assert (state["state"], state["store"], state["consecutiveFailures"], state["held"]) == ("open", "cosmos", 3, 1)
        clock.now += 5
        assert breakers.retry_in("acme") is None  # the probe
        assert breakers.retry_in("acme") is not None  # the others wait for it
        breakers.failure("acme", OUTAGE)  # the probe failed: open again, twice as long
        assert breakers.states()["acme"]["retryInSeconds"] == 10
        clock.now += 10
        assert breakers.retry_in("acme") is None
        breakers.success("acme")
        assert breakers.states() == {} and breakers.is_closed("acme")
    lines = [r.getMessage() for r in caplog.records if r.name == "waymark.holding"]
    assert "circuit breaker open for tenant 'acme'" in lines[0] and "next probe in 5 s" in lines[0]
    assert [line.split(" for tenant")[0] for line in lines] == [
        "circuit breaker open", "circuit breaker half-open", "circuit breaker open", "circuit breaker half-open",
        "circuit breaker closed"]
    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    points = metrics["waymark.breaker.transitions"].data.data_points
    assert {(dict(p.attributes or {})["waymark.state"], p.value) for p in points} == {
        ("open", 2), ("half-open", 2), ("closed", 1)}


def test_while_the_breaker_is_open_commands_are_held_without_touching_the_store() -> None:
    engine = _engine()
    engine.breakers = breakers = CircuitBreakers(threshold=1, cooldown=60)
    failures = CommandFailures(engine.parked, breakers, lambda body, delay: engine.queue.send(body, delay=delay))
    breakers.failure("acme", OUTAGE)
    assert failures.held_by_breaker(_trigger(), message_id="m-1") is True
    assert failures.held_by_breaker(_trigger(tenant="beta")) is False
    assert engine.queue.depth() == 1 and breakers.states()["acme"]["held"] == 1


def test_a_probe_that_fails_for_another_reason_closes_the_breaker() -> None:
    """The store answered (the command failed on its own account): the tenant's commands go ahead again."""
    engine = _engine()
    breakers = CircuitBreakers(threshold=1, cooldown=0)
    failures = CommandFailures(engine.parked, breakers, lambda body, delay: engine.queue.send(body, delay=delay))
    breakers.failure("acme", OUTAGE)
    assert failures.held_by_breaker(_trigger()) is False  # the probe
    assert failures.failed(_trigger(), RuntimeError("a bug"), dequeue_count=1) is False
    assert breakers.is_closed("acme") and failures.held_by_breaker(_trigger(2)) is False
