"""`explain` after a recovery (issue 15): what put the instance where it is, and a fault told in the past."""

from __future__ import annotations

from typing import Any

from engine.domain import RecoveryMode, Trigger
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance
from engine.service.explain import explain
from tests.integration.test_operations import PAYMENTS

T = "acme"


def faulted() -> Any:
    engine = memory_engine()
    engine.catalog.put(T, PAYMENTS)
    engine.processor.create(CreateInstance(T, "pay-1", "payments", "c-1", context={"total": 10}))
    engine.processor.trigger(T, "pay-1", Trigger("split", "split-1", {"parts": 0}))
    return engine


def explained(engine: Any) -> list[str]:
    instance = engine.events.load(T, "pay-1").to_dict()
    return explain(instance, [event.to_dict() for event in engine.events.read(T, "pay-1")])


def test_a_reset_is_what_put_it_there_and_the_fault_is_past() -> None:
    engine = faulted()
    assert any("It FAULTED on trigger 'split'" in line for line in explained(engine))
    engine.processor.recover(T, "pay-1", mode=RecoveryMode.RESET, by="ops", reason="paid by hand",
                             recovery_id="r-1", state="paid")
    lines = explained(engine)
    assert lines[0] == "pay-1 is Complete in state 'paid' (workflow payments v1, 4 event(s))."
    assert lines[1].startswith("It got there by a reset to 'paid' (a recovery) by ops at ")
    assert lines[2].startswith("It had faulted at ") and "(event 2: DivisionByZero); it was recovered (reset) by ops" \
        in lines[2] and lines[2].endswith(": paid by hand.")
    assert not any("FAULTED" in line or "No transition was ever applied" in line for line in lines)
    assert lines[-1] == "State 'paid' has no transitions, so the instance is complete and accepts no trigger."


def test_a_transition_after_the_reset_is_what_put_it_there() -> None:
    engine = faulted()
    engine.processor.recover(T, "pay-1", mode=RecoveryMode.RESET, by="ops", reason="again", recovery_id="r-1",
                             state="due")
    engine.processor.trigger(T, "pay-1", Trigger("pay", "pay-1", {}))
    lines = explained(engine)
    assert lines[1].startswith("It got there by transition 'pay' from 'due' on trigger 'pay'")


def test_a_retry_that_faults_again_says_so() -> None:
    engine = faulted()
    engine.processor.recover(T, "pay-1", mode=RecoveryMode.RETRY, by="ops", reason="try again", recovery_id="r-1")
    lines = explained(engine)
    assert lines[0].startswith("pay-1 is Faulted")
    assert any(line.endswith("It faulted again after that (below).") for line in lines)
    assert any(line.startswith("It FAULTED on trigger 'split'") for line in lines)
