"""Moving an instance to another version of its workflow (the domain's decision)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.domain import (
    EventType,
    Instance,
    MigrationRefused,
    Outcome,
    Services,
    Trigger,
    decide_create,
    decide_migrate,
    decide_trigger,
    default_registry,
    parse_definition,
)
from engine.domain.definition import WorkflowDefinition

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def version(number: int, states: dict[str, Any], initial: str = "draft") -> WorkflowDefinition:
    return parse_definition({"id": "claim", "initialState": initial, "states": states}, default_registry(),
                            version=number)


V1 = version(1, {
    "draft": {"transitions": [{"id": "submit", "trigger": "submit", "target": "review"}]},
    "review": {"timeouts": [{"id": "escalate", "after": "P3D", "trigger": {"topic": "escalate"}},
                            {"id": "remind", "after": "P1D", "trigger": {"topic": "remind"}}],
               "transitions": [{"id": "approve", "trigger": "approve", "target": "done"},
                               {"id": "escalate", "trigger": "escalate", "target": "done"},
                               {"id": "remind", "trigger": "remind", "target": "review"}]},
    "done": {},
})
V2 = version(2, {
    "draft": {"transitions": [{"id": "submit", "trigger": "submit", "target": "checking"}]},
    "checking": {"timeouts": [{"id": "escalate", "after": "P5D", "trigger": {"topic": "chase"}}],
                 "transitions": [{"id": "approve", "trigger": "approve", "target": "approved"},
                                 {"id": "chase", "trigger": "chase", "target": "approved"}]},
    "approved": {},
})


def in_review() -> Instance:
    instance = decide_create(V1, "c-1", context={"amount": 5}, interests=[], trigger_id="create", now=NOW,
                             services=Services()).instance
    return decide_trigger(instance, V1, Trigger("submit", "t1"), now=NOW, services=Services()).instance


def test_migrating_maps_the_state_patches_the_context_and_pins_the_new_version() -> None:
    instance = in_review()
    decision = decide_migrate(instance, V1, V2, state_map={"review": "checking"},
                              context_patch={"amount": None, "checked": True}, by="ops", reason="fixed",
                              command_id="m1", now=NOW)
    migrated = decision.events[0]
    assert decision.outcome is Outcome.MIGRATED and migrated.type is EventType.MIGRATED
    assert {k: migrated.data[k] for k in ("fromVersion", "toVersion", "from", "to", "by", "reason")} == {
        "fromVersion": 1, "toVersion": 2, "from": "review", "to": "checking", "by": "ops", "reason": "fixed"}
    after = decision.instance
    assert (after.workflow_version, after.state, dict(after.context)) == (2, "checking", {"checked": True})
    assert after.entry_sequence == instance.entry_sequence  # the visit goes on


def test_timeouts_go_on_where_the_target_state_has_them_and_are_cancelled_where_not() -> None:
    instance = in_review()
    before = instance.timer("escalate", instance.entry_sequence)
    decision = decide_migrate(instance, V1, V2, state_map={"review": "checking"}, context_patch=None, by="ops",
                              reason="r", command_id="m1", now=NOW)
    assert [e.type for e in decision.events] == [EventType.MIGRATED, EventType.TIMER_SCHEDULED,
                                                 EventType.TIMER_CANCELLED]
    (kept,) = decision.instance.timers
    assert before is not None
    assert (kept.id, kept.due_at, kept.trigger["id"]) == ("escalate", before.due_at, before.trigger["id"])
    assert kept.trigger["topic"] == "chase"  # the target version's trigger
    assert decision.events[2].data["timerId"] == "remind"


def test_later_triggers_are_decided_by_the_new_version() -> None:
    migrated = decide_migrate(in_review(), V1, V2, state_map={"review": "checking"}, context_patch=None, by="o",
                              reason="r", command_id="m", now=NOW).instance
    decision = decide_trigger(migrated, V2, Trigger("approve", "t2"), now=NOW, services=Services())
    assert decision.instance.state == "approved"


def test_a_migration_that_would_leave_the_instance_invalid_is_refused_with_every_reason() -> None:
    with pytest.raises(MigrationRefused) as raised:
        decide_migrate(in_review(), V1, V2, state_map={"nope": "gone"}, context_patch=None, by="o", reason="r",
                       command_id="m", now=NOW)
    messages = [str(problem) for problem in raised.value.problems]
    assert any("version 1 has no state 'nope'" in m for m in messages)
    assert any("version 2 has no state 'gone'" in m for m in messages)
    assert any("state 'review', which version 2 does not have" in m for m in messages)
    with pytest.raises(MigrationRefused, match="on version 1 already"):
        decide_migrate(in_review(), V1, V1, state_map={}, context_patch=None, by="o", reason="r", command_id="m",
                       now=NOW)


def test_the_interests_follow_the_target_state() -> None:
    v3 = version(3, {
        "draft": {"transitions": [{"id": "submit", "trigger": "submit", "target": "review"}]},
        "review": {"interests": [{"expression": "'team:' + context.team"}],
                   "transitions": [{"id": "approve", "trigger": "approve", "target": "done"}]},
        "done": {},
    })
    decision = decide_migrate(in_review(), V1, v3, state_map={}, context_patch={"team": "blue"}, by="o", reason="r",
                              command_id="m", now=NOW)
    assert set(decision.instance.interests) == {"c-1", "team:blue"}
    assert set(decision.events[0].data["interests"]) == {"c-1", "team:blue"}
    with pytest.raises(MigrationRefused, match="interests cannot be computed"):
        decide_migrate(in_review(), V1, v3, state_map={}, context_patch=None, by="o", reason="r", command_id="m",
                       now=NOW)
