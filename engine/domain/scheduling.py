"""What time does to an instance: a timer fires, a trigger is scheduled for later or cancelled, a stale firing is
recorded. Pure, like the rest of the aggregate: the time is an argument (see engine/domain/timers.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.domain.decision import Decision, Outcome, Recorder, decided, instance_view, record_fault
from engine.domain.definition import WorkflowDefinition
from engine.domain.errors import ExecutionError, SchedulingRefused, TimerNotFound
from engine.domain.events import EventType, timestamp
from engine.domain.extensions import Scope, Services
from engine.domain.fold import fold
from engine.domain.instance import Instance, Status, Trigger
from engine.domain.timers import PendingTimer
from engine.domain.triggering import decide_trigger
from engine.domain.visits import cancel_timers, next_firing

__all__ = ["MAX_SCHEDULED", "decide_cancel", "decide_fire", "decide_schedule", "decide_stale_firing",
           "scheduling_id"]

MAX_SCHEDULED = 100  # scheduled triggers pending on one instance


def scheduling_id(trigger_id: str) -> str:
    """The id of the commit that schedules trigger `trigger_id` (the trigger keeps its own id for when it fires)."""
    return f"{trigger_id}:scheduled"


def decide_fire(instance: Instance, workflow: WorkflowDefinition, timer: PendingTimer, *, now: datetime,
                services: Services) -> Decision:
    """A pending timer fires: `TimerFired`, then what its trigger does (the ordinary trigger path), then, for a
    repeating timeout whose visit goes on, the next firing. One commit, known by the firing's trigger id."""
    trigger = Trigger(timer.trigger["topic"], timer.trigger["id"], timer.trigger.get("content"))
    recorder = Recorder(instance.id, instance.version, trigger.id, timestamp(now))
    recorder.record(EventType.TIMER_FIRED, {"timerId": timer.id, "kind": timer.kind,
                                            "entrySequence": timer.entry_sequence, "n": timer.n,
                                            "dueAt": timer.due_at, "state": timer.state, "topic": trigger.topic})
    fired = fold(instance, recorder.events)
    assert fired is not None
    result = decide_trigger(fired, workflow, trigger, now=now, services=services)
    recorder.events.extend(result.events)
    recorder.next += len(result.events)
    after = result.instance
    timeout = workflow.state(after.state).timeout(timer.id) if timer.state == after.state else None
    if (timeout is not None and timer.kind == "timeout" and after.status is Status.WAITING
            and after.entry_sequence == timer.entry_sequence):
        scope = Scope(instance_view(after.id, workflow, after.state, after.status, after.version), dict(after.context),
                      trigger.to_dict(), recorder.next, services)
        try:
            following = next_firing(timer, timeout, instance_id=instance.id, now=now, evaluate=scope.evaluate)
        except ExecutionError as error:
            record_fault(recorder, error, trigger, None, step=scope.step)
            return decided(instance, recorder, Outcome.FAULTED, error.message)
        if following is not None:
            recorder.record(EventType.TIMER_SCHEDULED, following)
    return decided(instance, recorder, result.outcome, result.reason)


def decide_stale_firing(instance: Instance, *, timer_id: str, entry_sequence: int | None, n: int, trigger_id: str,
                        topic: str | None, reason: str, now: datetime) -> Decision:
    """A firing of a timer that is no longer pending (its visit ended, it was cancelled): recorded as
    `TriggerIgnored` with why, never applied."""
    recorder = Recorder(instance.id, instance.version, trigger_id, timestamp(now))
    recorder.record(EventType.TRIGGER_IGNORED, {"topic": topic, "reason": reason,
                                                "timer": {"timerId": timer_id, "entrySequence": entry_sequence,
                                                          "n": n}})
    return decided(instance, recorder, Outcome.IGNORED, reason)


def decide_schedule(instance: Instance, trigger: Trigger, *, due: datetime, now: datetime,
                    by: str | None = None) -> Decision:
    """Schedule `trigger` to be sent to the instance at `due` (a timer of kind `trigger`: `TimerScheduled`).
    Refused for an instance that accepts no more triggers, for a trigger id that is pending already, and past
    MAX_SCHEDULED pending scheduled triggers."""
    if instance.status in (Status.COMPLETE, Status.TERMINATED):
        raise SchedulingRefused("", instance.id, f"the instance is {instance.status} and accepts no trigger")
    scheduled = [t for t in instance.timers if t.kind == "trigger"]
    if any(t.id == trigger.id for t in scheduled):
        raise SchedulingRefused("", instance.id, f"a trigger with id {trigger.id!r} is scheduled already")
    if len(scheduled) >= MAX_SCHEDULED:
        raise SchedulingRefused("", instance.id, f"it has {len(scheduled)} scheduled triggers pending, the most "
                                                 "one instance may have")
    recorder = Recorder(instance.id, instance.version, scheduling_id(trigger.id), timestamp(now))
    data: dict[str, Any] = {"timerId": trigger.id, "kind": "trigger", "entrySequence": None, "n": 1,
                            "dueAt": timestamp(due), "trigger": trigger.to_dict()}
    if by is not None:
        data["by"] = by
    recorder.record(EventType.TIMER_SCHEDULED, data)
    return decided(instance, recorder, Outcome.SCHEDULED)


def decide_cancel(instance: Instance, timer_id: str, *, by: str, reason: str, command_id: str,
                  now: datetime) -> Decision:
    """Cancel a pending scheduled trigger (`TimerCancelled`). A state's timeout is not cancelled this way: leaving
    the state does that."""
    pending = [t for t in instance.timers if t.id == timer_id]
    if not pending:
        raise TimerNotFound("", instance.id, timer_id)
    if all(t.kind != "trigger" for t in pending):
        raise SchedulingRefused("", instance.id, f"{timer_id!r} is a timeout of state {instance.state!r}: it ends "
                                                 "when the instance leaves the state")
    recorder = Recorder(instance.id, instance.version, command_id, timestamp(now))
    for data in cancel_timers([t for t in pending if t.kind == "trigger"], reason=reason,
                              kinds=frozenset({"trigger"}), by=by):
        recorder.record(EventType.TIMER_CANCELLED, data)
    return decided(instance, recorder, Outcome.CANCELLED)

