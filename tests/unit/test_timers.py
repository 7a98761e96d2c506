"""Timers in the domain: timeouts in definitions, the visit they belong to, firing, repeating, scheduled triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.domain import (
    EventType,
    Instance,
    InvalidDefinition,
    Outcome,
    SchedulingRefused,
    Services,
    Status,
    TimerNotFound,
    Trigger,
    decide_cancel,
    decide_create,
    decide_fire,
    decide_recover,
    decide_schedule,
    decide_terminate,
    decide_trigger,
    default_registry,
    parse_definition,
    parse_duration,
)
from engine.domain.definition import WorkflowDefinition
from engine.domain.recovery import RecoveryMode

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def workflow(states: dict[str, Any], initial: str = "waiting") -> WorkflowDefinition:
    return parse_definition({"id": "w", "initialState": initial, "states": states}, default_registry(), version=1)


def approval(*, after: str = "P3D", repeat: Any = None) -> WorkflowDefinition:
    timeout: dict[str, Any] = {"id": "escalate", "after": after, "trigger": {"topic": "escalate",
                                                                           "content": {"reason": "timeout"}}}
    if repeat is not None:
        timeout["repeat"] = repeat
    return workflow({
        "waiting": {
            "timeouts": [timeout],
            "transitions": [
                {"id": "escalate", "trigger": "escalate", "target": "escalated",
                 "conditions": [{"type": "expression", "expression": "!has(context.hold)"}]},
                {"id": "note", "trigger": "note", "target": "waiting",
                 "actions": [{"type": "set-context", "values": {"note": "trigger.content.text"}}]},
                {"id": "approve", "trigger": "approve", "target": "approved"},
            ],
        },
        "escalated": {"transitions": [{"id": "approve-late", "trigger": "approve", "target": "approved"}]},
        "approved": {},
    })


def create(definition: WorkflowDefinition, context: dict[str, Any] | None = None, *,
           now: datetime = NOW) -> Instance:
    return decide_create(definition, "i-1", context=context or {}, interests=[], trigger_id="create", now=now,
                         services=Services()).instance


def send(instance: Instance, definition: WorkflowDefinition, topic: str, content: Any = None, *,
         now: datetime = NOW, trigger_id: str = "t") -> Any:
    return decide_trigger(instance, definition, Trigger(topic, trigger_id, content or {}), now=now,
                          services=Services())


def fire(instance: Instance, definition: WorkflowDefinition, *, now: datetime) -> Any:
    (timer,) = instance.timers
    return decide_fire(instance, definition, timer, now=now, services=Services())


# ---------------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize(("text", "seconds"), [
    ("PT30S", 30), ("PT2H", 7200), ("P3D", 3 * 86400), ("P1W", 7 * 86400), ("PT1H30M", 5400), ("PT0.5S", 0.5),
    ("P1DT2H", 93600), ("pt1m", 60),
])
def test_iso_8601_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["P", "PT", "3D", "P1Y", "P2M", "PT1H2", "P1DT", "soon"])
def test_what_is_not_a_duration_is_refused_with_why(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|fixed length"):
        parse_duration(text)


def test_a_definition_with_bad_timeouts_lists_every_problem() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        workflow({"waiting": {
            "timeouts": [
                {"id": "a", "after": "P1Y", "trigger": {"topic": "go"}},
                {"id": "b", "after": "context.(", "trigger": {"topic": "go"}},
                {"id": "c", "after": "PT1H", "trigger": {"topic": "nobody-answers"}},
                {"id": "c", "after": "PT1H", "trigger": {"topic": "go"}},
                {"id": "d", "after": "PT0.1S", "repeat": True, "trigger": {"topic": "go"}},
                {"id": "e", "after": "PT1H", "repeat": -1, "trigger": {"topic": "go", "extra": 1}, "when": 1},
                {"after": "PT1H"},
            ],
            "transitions": [{"id": "go", "trigger": "go", "target": "done"}]},
            "done": {}})
    paths = {problem.path for problem in raised.value.problems}
    assert {"$.states.waiting.timeouts[0].after", "$.states.waiting.timeouts[1].after",
            "$.states.waiting.timeouts[2].trigger.topic", "$.states.waiting.timeouts[3].id",
            "$.states.waiting.timeouts[4].after", "$.states.waiting.timeouts[5].repeat",
            "$.states.waiting.timeouts[5].trigger", "$.states.waiting.timeouts[5].when",
            "$.states.waiting.timeouts[6].id", "$.states.waiting.timeouts[6].trigger.topic"} <= paths


# ---------------------------------------------------------------------------------------------- the visit

def test_entering_a_state_schedules_its_timeouts_with_the_visit_and_a_deterministic_firing_id() -> None:
    instance = create(approval())
    (timer,) = instance.timers
    assert (timer.id, timer.kind, timer.entry_sequence, timer.n) == ("escalate", "timeout", 1, 1)
    assert timer.due_at == "2026-11-24T12:00:00.000000Z"
    assert timer.trigger == {"id": "i-1:1:escalate:1", "topic": "escalate", "content": {"reason": "timeout"}}


def test_leaving_the_state_cancels_its_timers_in_the_same_commit() -> None:
    definition = approval()
    decision = send(create(definition), definition, "approve")
    types = [event.type for event in decision.events]
    assert types == [EventType.TRANSITION_APPLIED, EventType.TIMER_CANCELLED, EventType.COMPLETED]
    assert decision.instance.timers == ()
    assert decision.events[1].data["reason"] == "the instance completed in state 'approved'"


def test_a_transition_back_to_the_same_state_keeps_the_visit_and_its_timer() -> None:
    definition = approval()
    instance = create(definition)
    after = send(instance, definition, "note", {"text": "hello"}).instance
    assert after.timers == instance.timers and after.entry_sequence == 1


def test_moving_to_another_timed_state_begins_a_new_visit() -> None:
    definition = workflow({
        "a": {"timeouts": [{"id": "t", "after": "PT1M", "trigger": {"topic": "next"}}],
              "transitions": [{"id": "next", "trigger": "next", "target": "b"}]},
        "b": {"timeouts": [{"id": "t", "after": "PT2M", "trigger": {"topic": "next"}}],
              "transitions": [{"id": "back", "trigger": "next", "target": "a"}]},
    }, initial="a")
    decision = send(create(definition), definition, "next")
    assert [e.type for e in decision.events] == [EventType.TRANSITION_APPLIED, EventType.TIMER_CANCELLED,
                                                 EventType.TIMER_SCHEDULED]
    (timer,) = decision.instance.timers
    assert (timer.state, timer.entry_sequence, timer.trigger["id"]) == ("b", 3, "i-1:3:t:1")
    assert decision.instance.entry_sequence == 3


def test_a_timer_fires_through_the_ordinary_trigger_path() -> None:
    definition = approval()
    instance = create(definition)
    decision = fire(instance, definition, now=NOW + timedelta(days=3, seconds=1))
    assert decision.outcome is Outcome.APPLIED
    assert [e.type for e in decision.events] == [EventType.TIMER_FIRED, EventType.TRANSITION_APPLIED]
    assert {e.trigger_id for e in decision.events} == {"i-1:1:escalate:1"}
    assert decision.instance.state == "escalated" and decision.instance.timers == ()


def test_a_timer_whose_trigger_is_ignored_is_spent_unless_it_repeats() -> None:
    definition = approval()
    instance = create(definition, {"hold": True})
    decision = fire(instance, definition, now=NOW + timedelta(days=3))
    assert [e.type for e in decision.events] == [EventType.TIMER_FIRED, EventType.TRIGGER_IGNORED]
    assert decision.instance.timers == ()


def test_a_repeating_timer_schedules_its_next_firing_while_the_visit_lasts() -> None:
    definition = approval(after="PT1H", repeat=True)
    instance = create(definition, {"hold": True})
    for n in range(1, 4):
        instance = fire(instance, definition, now=NOW + timedelta(hours=n)).instance
        (timer,) = instance.timers
        assert (timer.n, timer.trigger["id"]) == (n + 1, f"i-1:1:escalate:{n + 1}")
        assert timer.due_at == f"2026-11-21T{12 + n + 1}:00:00.000000Z"
    left = send(instance, definition, "approve").instance
    assert left.timers == ()


def test_a_repeat_with_a_limit_stops_after_that_many_firings() -> None:
    definition = approval(after="PT1H", repeat=2)
    instance = create(definition, {"hold": True})
    instance = fire(instance, definition, now=NOW + timedelta(hours=1)).instance
    instance = fire(instance, definition, now=NOW + timedelta(hours=2)).instance
    assert instance.timers == ()


def test_firings_missed_while_nothing_ran_are_not_made_up_one_by_one() -> None:
    definition = approval(after="PT1H", repeat=True)
    instance = create(definition, {"hold": True})
    late = fire(instance, definition, now=NOW + timedelta(hours=5, minutes=30)).instance
    (timer,) = late.timers
    assert (timer.n, timer.due_at) == (2, "2026-11-21T18:00:00.000000Z")


def test_after_as_cel_giving_a_timestamp_or_a_duration() -> None:
    for after, context, due in [
        ("context.dueAt", {"dueAt": "2026-12-01T09:00:00Z"}, "2026-12-01T09:00:00.000000Z"),
        ("duration(context.wait)", {"wait": "90m"}, "2026-11-21T13:30:00.000000Z"),
        ("context.wait", {"wait": "PT2H"}, "2026-11-21T14:00:00.000000Z"),
        ("timestamp(context.at) + duration('1h')", {"at": "2026-11-22T00:00:00Z"}, "2026-11-22T01:00:00.000000Z"),
    ]:
        (timer,) = create(approval(after=after), context).timers
        assert timer.due_at == due, after


def test_an_after_that_fails_faults_the_instance_where_it_is() -> None:
    decision = decide_create(approval(after="context.dueAt"), "i-1", context={}, interests=[], trigger_id="c",
                             now=NOW, services=Services())
    assert decision.outcome is Outcome.FAULTED
    assert decision.instance.fault is not None
    assert decision.instance.fault.where == "$.states.waiting.timeouts[0].after"
    wrong = decide_create(approval(after="context.n"), "i-1", context={"n": 3}, interests=[], trigger_id="c",
                          now=NOW, services=Services())
    assert wrong.instance.fault is not None and wrong.instance.fault.error_type == "TypeMismatch"


def test_terminating_cancels_every_pending_timer() -> None:
    definition = approval()
    instance = decide_schedule(create(definition), Trigger("approve", "later"), due=NOW + timedelta(days=1),
                               now=NOW).instance
    decision = decide_terminate(instance, by="ops", reason="withdrawn", command_id="x", now=NOW)
    assert [e.data["timerId"] for e in decision.events if e.type is EventType.TIMER_CANCELLED] == ["escalate",
                                                                                                  "later"]
    assert decision.instance.timers == ()


def test_a_reset_begins_a_new_visit() -> None:
    definition = approval()
    instance = create(definition)
    decision = decide_recover(instance, definition, mode=RecoveryMode.RESET, by="ops", reason="again",
                              recovery_id="r", now=NOW + timedelta(hours=1), services=Services(), state="waiting",
                              force=True)
    (timer,) = decision.instance.timers
    assert timer.entry_sequence == 3 and timer.due_at == "2026-11-24T13:00:00.000000Z"
    assert [e.type for e in decision.events] == [EventType.RECOVERED, EventType.TIMER_CANCELLED,
                                                 EventType.TIMER_SCHEDULED]


# ---------------------------------------------------------------------------------------------- scheduled triggers

def test_scheduling_a_trigger_records_it_and_firing_sends_it_with_its_own_id() -> None:
    definition = approval()
    instance = create(definition)
    decision = decide_schedule(instance, Trigger("approve", "approve-later", {"by": "ann"}),
                               due=NOW + timedelta(hours=2), now=NOW, by="ann")
    assert decision.outcome is Outcome.SCHEDULED and decision.events[0].trigger_id == "approve-later:scheduled"
    timer = decision.instance.timer("approve-later", None)
    assert timer is not None and timer.kind == "trigger" and timer.by == "ann"
    fired = decide_fire(decision.instance, definition, timer, now=NOW + timedelta(hours=2), services=Services())
    assert fired.outcome is Outcome.APPLIED and fired.instance.state == "approved"
    assert {e.trigger_id for e in fired.events} == {"approve-later"}


def test_scheduling_is_refused_where_it_cannot_apply() -> None:
    definition = approval()
    instance = create(definition)
    scheduled = decide_schedule(instance, Trigger("approve", "x"), due=NOW, now=NOW).instance
    with pytest.raises(SchedulingRefused, match="scheduled already"):
        decide_schedule(scheduled, Trigger("approve", "x"), due=NOW, now=NOW)
    done = send(instance, definition, "approve").instance
    assert done.status is Status.COMPLETE
    with pytest.raises(SchedulingRefused, match="Complete"):
        decide_schedule(done, Trigger("approve", "y"), due=NOW, now=NOW)


def test_cancelling_a_scheduled_trigger() -> None:
    instance = decide_schedule(create(approval()), Trigger("approve", "x"), due=NOW, now=NOW).instance
    decision = decide_cancel(instance, "x", by="ann", reason="changed my mind", command_id="c", now=NOW)
    assert decision.outcome is Outcome.CANCELLED and decision.instance.timer("x", None) is None
    assert decision.events[0].data["by"] == "ann"
    with pytest.raises(TimerNotFound):
        decide_cancel(decision.instance, "x", by="ann", reason="again", command_id="d", now=NOW)
    with pytest.raises(SchedulingRefused, match="timeout of state"):
        decide_cancel(instance, "escalate", by="ann", reason="no", command_id="e", now=NOW)


def test_a_stored_instance_keeps_its_timers() -> None:
    instance = decide_schedule(create(approval()), Trigger("approve", "x"), due=NOW, now=NOW).instance
    assert Instance.from_dict(instance.to_dict()) == instance
