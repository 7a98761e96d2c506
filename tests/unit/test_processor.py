"""The command processor on the in-memory adapters: idempotency, broadcast, conflicts, the commit hook."""

from __future__ import annotations

from typing import Any

import pytest

from engine.domain import Commit, ConcurrencyConflict, InstanceAlreadyExists, Outcome, Status, Trigger
from engine.hosting.runtime import memory_engine
from engine.service.commands import Broadcast, CreateInstance, SendTrigger, from_message, to_message
from engine.service.processor import CommandProcessor

T = "acme"


@pytest.fixture
def engine(expense_claim: dict[str, Any]) -> Any:
    engine = memory_engine()
    engine.catalog.put(T, expense_claim)
    return engine


def create(engine: Any, instance_id: str, claimant: str = "ann", interests: tuple[str, ...] = ()) -> Any:
    return engine.processor.create(CreateInstance(T, instance_id, "expense-claim", f"c-{instance_id}",
                                                  context={"claimant": claimant}, interests=interests))


def test_walk_the_expense_claim_to_paid(engine: Any) -> None:
    assert create(engine, "claim-1").outcome is Outcome.CREATED
    steps = [("update", {"amount": 10}), ("submit", {}), ("approve", {"approver": "bob"}), ("pay", {"paidAt": "x"})]
    for n, (topic, content) in enumerate(steps):
        result = engine.processor.trigger(T, "claim-1", Trigger(topic, f"t{n}", content))
        assert result.outcome is Outcome.APPLIED, result
    instance = engine.events.load(T, "claim-1")
    assert (instance.state, instance.status) == ("paid", Status.COMPLETE)


def test_the_same_trigger_id_is_applied_once_and_answers_with_the_first_result(engine: Any) -> None:
    create(engine, "claim-1")
    first = engine.processor.trigger(T, "claim-1", Trigger("update", "same", {"amount": 1}))
    again = engine.processor.trigger(T, "claim-1", Trigger("update", "same", {"amount": 999}))
    assert not first.duplicate and again.duplicate
    assert again.commit.last_sequence == first.commit.last_sequence
    assert engine.events.load(T, "claim-1").context["amount"] == 1
    assert len(engine.events.read(T, "claim-1")) == 2


def test_creating_twice_with_the_same_trigger_is_idempotent_but_a_new_create_conflicts(engine: Any) -> None:
    create(engine, "claim-1")
    assert create(engine, "claim-1").duplicate
    with pytest.raises(InstanceAlreadyExists):
        engine.processor.create(CreateInstance(T, "claim-1", "expense-claim", "another", context={"claimant": "x"}))


def test_instances_pin_the_definition_version_they_were_created_with(engine: Any, expense_claim: dict[str, Any]) -> None:
    create(engine, "old")
    changed = {**expense_claim, "states": {**expense_claim["states"], "draft": {
        **expense_claim["states"]["draft"], "transitions": [
            {"id": "update", "trigger": "update", "target": "abandoned"},
            *expense_claim["states"]["draft"]["transitions"][1:]]}}}
    assert engine.catalog.put(T, changed).version == 2
    create(engine, "new")
    assert engine.processor.trigger(T, "old", Trigger("update", "u", {"amount": 3})).instance.state == "draft"
    assert engine.processor.trigger(T, "new", Trigger("update", "u", {"amount": 3})).instance.state == "abandoned"


def test_broadcast_reaches_every_interested_instance_once(engine: Any) -> None:
    create(engine, "a", interests=("team:x",))
    create(engine, "b", interests=("team:x", "team:y"))
    create(engine, "c", interests=("team:z",))
    trigger = Trigger("update", "bc-1", {"amount": 7}, subjects=("team:x", "team:y"))
    results = engine.processor.handle(Broadcast(T, trigger))
    assert sorted(r.instance_id for r in results) == ["a", "b"]
    again = engine.processor.handle(Broadcast(T, trigger))
    assert all(r.duplicate for r in again)
    assert engine.events.load(T, "c").context.get("amount") is None


def test_a_fault_is_recorded_and_later_triggers_are_rejected(engine: Any) -> None:
    engine.catalog.put(T, {"id": "div", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "a", "actions": [{"type": "set-context", "values": {"x": "1/0"}}]}]}}})
    engine.processor.create(CreateInstance(T, "d", "div", "c"))
    assert engine.processor.trigger(T, "d", Trigger("go", "1")).outcome is Outcome.FAULTED
    assert engine.processor.trigger(T, "d", Trigger("go", "2")).outcome is Outcome.REJECTED
    assert engine.events.load(T, "d").status is Status.FAULTED


def test_a_lost_race_is_re_decided_on_the_new_version(engine: Any) -> None:
    create(engine, "claim-1")
    real_append = engine.events.append
    raced = []

    def append_losing_once(tenant: str, instance_id: str, expected: int, events: Any, *, state: Any) -> Commit:
        if not raced:
            raced.append(True)
            engine.processor.trigger(T, "claim-1", Trigger("update", "racer", {"amount": 5}))
        return real_append(tenant, instance_id, expected, events, state=state)  # type: ignore[no-any-return]

    engine.events.append = append_losing_once
    result = engine.processor.trigger(T, "claim-1", Trigger("update", "mine", {"amount": 9}))
    assert result.commit.first_sequence == 3
    assert [e.trigger_id for e in engine.events.read(T, "claim-1")] == ["c-claim-1", "racer", "mine"]


def test_conflicts_that_never_end_hand_the_command_back() -> None:
    class AlwaysConflicting:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def append(self, tenant: str, instance_id: str, expected: int, events: Any, *, state: Any) -> Commit:
            raise ConcurrencyConflict(tenant, instance_id, expected, expected + 1)

    engine = memory_engine()
    inner = engine.events
    engine.catalog.put(T, {"id": "w", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "a"}]}}})
    engine.processor.create(CreateInstance(T, "i", "w", "c"))
    processor = CommandProcessor(AlwaysConflicting(), engine.catalog)  # type: ignore[arg-type]
    with pytest.raises(ConcurrencyConflict):
        processor.trigger(T, "i", Trigger("go", "x"))


def test_every_commit_reaches_the_listener_and_a_failing_listener_never_faults(expense_claim: dict[str, Any]) -> None:
    seen: list[tuple[str, int]] = []

    def listener(tenant: str, commit: Commit) -> None:
        seen.append((tenant, commit.last_sequence))
        raise RuntimeError("subscriber down")

    engine = memory_engine()
    engine.catalog.put(T, expense_claim)
    processor = CommandProcessor(engine.events, engine.catalog, on_commit=listener)
    processor.create(CreateInstance(T, "c", "expense-claim", "c", context={"claimant": "x"}))
    result = processor.trigger(T, "c", Trigger("update", "u", {"amount": 1}))
    assert result.outcome is Outcome.APPLIED
    assert seen == [(T, 1), (T, 2)]


def test_command_messages_round_trip() -> None:
    commands = [
        CreateInstance(T, "i", "w", "t", context={"k": "ü"}, interests=("s",), workflow_version=2),
        SendTrigger(T, "i", Trigger("go", "t1", {"n": 1}, subjects=("a",))),
        Broadcast(T, Trigger("go", "t2", None, subjects=("a", "b"))),
    ]
    for command in commands:
        assert from_message(to_message(command)) == command
