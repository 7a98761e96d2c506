"""Recovering and terminating instances: only by appending events."""

from __future__ import annotations

from typing import Any

import pytest

from engine.domain import (
    EventType,
    InvalidCommand,
    Outcome,
    RecoveryMode,
    RecoveryRefused,
    Status,
    Trigger,
    fold,
)
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance

T = "acme"
PAYMENTS = {
    "id": "payments",
    "initialState": "due",
    "states": {
        "due": {"transitions": [
            {"id": "pay", "trigger": "pay", "target": "paid",
             "actions": [{"type": "set-context", "values": {"share": "context.total / trigger.content.parts"}}]},
            {"id": "note", "trigger": "note", "target": "due",
             "actions": [{"type": "set-context", "values": {"note": "trigger.content.text"}}]}]},
        "paid": {},
    },
}


@pytest.fixture
def engine() -> Any:
    engine = memory_engine()
    engine.catalog.put(T, PAYMENTS)
    engine.processor.create(CreateInstance(T, "p-1", "payments", "create", context={"total": 100}))
    return engine


def fault(engine: Any) -> None:
    result = engine.processor.trigger(T, "p-1", Trigger("pay", "pay-1", {"parts": 0}))
    assert result.outcome is Outcome.FAULTED


def test_retry_re_runs_the_faulting_trigger_against_the_pinned_definition(engine: Any) -> None:
    fault(engine)
    # The cause is fixed outside the instance (here: the definition gets a guard); the instance keeps v1.
    engine.catalog.put(T, {**PAYMENTS, "states": {"due": {"transitions": [{"id": "pay", "trigger": "pay", "target": "paid"}]},
                                                  "paid": {}}})
    still = engine.processor.recover(T, "p-1", mode=RecoveryMode.RETRY, by="ops@acme", reason="try again",
                                     recovery_id="r-1")
    assert still.outcome is Outcome.FAULTED  # the same trigger on the same definition faults again
    events = engine.events.read(T, "p-1")
    assert [e.type for e in events[-2:]] == [EventType.RECOVERED, EventType.FAULTED]
    assert events[-2].data["by"] == "ops@acme" and events[-2].data["reason"] == "try again"
    assert events[-2].trigger_id == "r-1" and events[-1].trigger_id == "pay-1"


def test_retry_that_succeeds_applies_the_trigger(engine: Any) -> None:
    engine.processor.trigger(T, "p-1", Trigger("note", "n-1", {"text": 5}))
    engine.catalog.put(T, PAYMENTS)
    # Fault via a content that divides by zero, then "fix" the data with a reset patch and retry.
    fault(engine)
    instance = engine.events.load(T, "p-1")
    assert instance.status is Status.FAULTED and instance.fault.trigger_id == "pay-1"
    recovered = engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="ops", reason="total is wrong",
                                         recovery_id="r-2", context_patch={"total": 0})
    assert recovered.outcome is Outcome.RECOVERED
    assert recovered.instance.status is Status.WAITING and recovered.instance.fault is None
    assert recovered.instance.context == {"total": 0, "note": 5}


def test_reset_to_a_named_state_and_to_an_earlier_event(engine: Any) -> None:
    engine.processor.trigger(T, "p-1", Trigger("note", "n-1", {"text": "a"}))
    engine.processor.trigger(T, "p-1", Trigger("note", "n-2", {"text": "b"}))
    fault(engine)
    result = engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="ops", reason="back to event 2",
                                      recovery_id="r-3", to_sequence=2)
    assert result.instance.context == {"total": 100, "note": "a"}
    assert result.instance.state == "due" and result.instance.status is Status.WAITING
    assert result.commit.events[0].data["toSequence"] == 2
    done = engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="ops", reason="paid by hand",
                                    recovery_id="r-4", state="paid", force=True)
    assert [e.type for e in done.commit.events] == [EventType.RECOVERED, EventType.COMPLETED]
    assert done.instance.status is Status.COMPLETE
    assert fold(None, engine.events.read(T, "p-1")) == engine.events.load(T, "p-1")


def test_recovery_of_a_healthy_instance_is_refused_unless_forced(engine: Any) -> None:
    with pytest.raises(RecoveryRefused, match="not Faulted"):
        engine.processor.recover(T, "p-1", mode=RecoveryMode.RETRY, by="ops", reason="x", recovery_id="r")
    forced = engine.processor.recover(T, "p-1", mode=RecoveryMode.RETRY, by="ops", reason="x", recovery_id="r",
                                      force=True)
    assert forced.outcome is Outcome.RECOVERED


def test_invalid_reset_targets(engine: Any) -> None:
    fault(engine)
    with pytest.raises(InvalidCommand, match="no state 'nowhere'"):
        engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="o", reason="x", recovery_id="r",
                                 state="nowhere")
    with pytest.raises(InvalidCommand, match="toSequence"):
        engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="o", reason="x", recovery_id="r",
                                 to_sequence=99)


def test_the_same_recovery_applies_once(engine: Any) -> None:
    fault(engine)
    first = engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="o", reason="x", recovery_id="same")
    again = engine.processor.recover(T, "p-1", mode=RecoveryMode.RESET, by="o", reason="x", recovery_id="same")
    assert again.duplicate and again.commit.last_sequence == first.commit.last_sequence


def test_terminate_ends_the_instance_for_good(engine: Any) -> None:
    result = engine.processor.terminate(T, "p-1", by="ops", reason="customer left", command_id="term-1")
    assert result.outcome is Outcome.TERMINATED and result.instance.status is Status.TERMINATED
    assert engine.processor.trigger(T, "p-1", Trigger("note", "late", {"text": 1})).outcome is Outcome.REJECTED
    with pytest.raises(RecoveryRefused):
        engine.processor.recover(T, "p-1", mode=RecoveryMode.RETRY, by="o", reason="x", recovery_id="r", force=True)
    with pytest.raises(RecoveryRefused):
        engine.processor.terminate(T, "p-1", by="ops", reason="again", command_id="term-2")


def test_retry_of_a_fault_at_creation_re_runs_the_entry_conditions() -> None:
    engine = memory_engine()
    engine.catalog.put(T, {"id": "needs", "initialState": "a", "states": {"a": {
        "entryConditions": [{"type": "expression", "expression": "has(context.who)"}],
        "transitions": [{"id": "t", "trigger": "go", "target": "a"}]}}})
    created = engine.processor.create(CreateInstance(T, "n", "needs", "c"))
    assert created.outcome is Outcome.FAULTED
    again = engine.processor.recover(T, "n", mode=RecoveryMode.RETRY, by="o", reason="x", recovery_id="r1")
    assert again.outcome is Outcome.FAULTED
    fixed = engine.processor.recover(T, "n", mode=RecoveryMode.RESET, by="o", reason="add who", recovery_id="r2",
                                     context_patch={"who": "ann"})
    assert fixed.instance.status is Status.WAITING and fixed.instance.context == {"who": "ann"}
