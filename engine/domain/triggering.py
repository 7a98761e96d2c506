"""What one trigger does to an instance: applied (a transition), ignored (with why), rejected or faulted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.domain.audit import audited_content
from engine.domain.decision import Decision, Outcome, Recorder, decided, instance_view, record_all, record_fault
from engine.domain.definition import State, Transition, WorkflowDefinition
from engine.domain.errors import ExecutionError
from engine.domain.events import Event, EventType, timestamp
from engine.domain.extensions import Scope, Services
from engine.domain.instance import Instance, Status, Trigger
from engine.domain.interests import interests_of
from engine.domain.steps import context_changes, failing_condition, run_actions
from engine.domain.visits import ALL, cancel_timers, schedule_visit

__all__ = ["VERSION_MISMATCH", "decide_trigger", "is_version_mismatch"]


VERSION_MISMATCH = "version-mismatch"  # the `reason` of a trigger refused by its expected version


def is_version_mismatch(events: Sequence[Event]) -> bool:
    """Whether a commit's events are the rejection of a trigger whose expected version did not hold."""
    return any(e.type is EventType.TRIGGER_REJECTED and e.data.get("reason") == VERSION_MISMATCH for e in events)


def decide_trigger(instance: Instance, workflow: WorkflowDefinition, trigger: Trigger, *, now: datetime,
                   services: Services, step: int | None = None) -> Decision:
    """What one trigger does to the instance: applied, ignored (with why), rejected or faulted. `step`: the first
    sequence of the step (by default the commit's own; a recovery's retry passes the faulted step's)."""
    recorder = Recorder(instance.id, instance.version, trigger.id, timestamp(now))
    refused = _refusal(instance, trigger)
    if refused is not None:
        reason, data = refused
        recorder.record(EventType.TRIGGER_REJECTED,
                        {**data, **audited_content(trigger.content, services.audit_content_limit)})
        return decided(instance, recorder, Outcome.REJECTED, reason)
    source = workflow.state(instance.state)
    scope = Scope(instance_view(instance.id, workflow, source.id, instance.status, instance.version),
                  dict(instance.context), trigger.to_dict(), instance.version + 1, services, step=step)
    transition_id: str | None = None
    try:
        chosen = _choose(source, trigger, scope)
        if isinstance(chosen, str):
            return _ignored(instance, recorder, trigger, chosen, services)
        transition_id = chosen.id
        target = workflow.state(chosen.target)
        failed = failing_condition(target.entry_conditions, scope)
        if failed is not None:
            reason = f"entry condition {failed.where} of target state {target.id!r} does not hold"
            return _ignored(instance, recorder, trigger, reason, services)
        move = _move(instance, source, chosen, target, scope, entry_sequence=recorder.next, now=now)
    except ExecutionError as error:
        record_fault(recorder, error, trigger, transition_id, step=scope.step)
        return decided(instance, recorder, Outcome.FAULTED, error.message)
    _record_move(recorder, instance, trigger, move)
    return decided(instance, recorder, Outcome.APPLIED)


def _refusal(instance: Instance, trigger: Trigger) -> tuple[str, dict[str, Any]] | None:
    """Why the instance takes no trigger now (its expected version does not hold, or it is not Waiting), with the
    data of the rejection; None: it takes it."""
    if trigger.expected_version is not None and trigger.expected_version != instance.version:
        detail = (f"the trigger expected the instance at version {trigger.expected_version}; "
                  f"it is at version {instance.version}")
        return detail, {"topic": trigger.topic, "status": str(instance.status), "reason": VERSION_MISMATCH,
                        "detail": detail, "expectedVersion": trigger.expected_version, "version": instance.version}
    if instance.status is not Status.WAITING:
        reason = f"the instance is {instance.status} and accepts no trigger"
        return reason, {"topic": trigger.topic, "status": str(instance.status), "reason": reason}
    return None


def _choose(source: State, trigger: Trigger, scope: Scope) -> Transition | str:
    """The transition the trigger takes out of `source`, or why it takes none (raises ExecutionError)."""
    failed = failing_condition(source.exit_conditions, scope)
    if failed is not None:
        return f"exit condition {failed.where} of state {source.id!r} does not hold"
    for transition in source.transitions:
        # Marain.Workflow's rule: a transition without a topic answers any trigger its conditions accept.
        answers = transition.trigger is None or transition.trigger == trigger.topic
        if answers and failing_condition(transition.conditions, scope) is None:
            return transition
    if any(t.trigger in (None, trigger.topic) for t in source.transitions):
        return f"no transition for topic {trigger.topic!r} from state {source.id!r} has all its conditions true"
    return f"state {source.id!r} has no transition for topic {trigger.topic!r}"


@dataclass(frozen=True, slots=True)
class _Move:
    """A transition run: what its actions changed, what the instance listens to and the timers of its new visit."""

    source: State
    transition: Transition
    target: State
    changes: dict[str, Any]
    removed: set[str]
    listening: tuple[str, ...]
    leaving: bool  # a transition back to the same state keeps the visit and its timers
    timers: list[dict[str, Any]]


def _move(instance: Instance, source: State, chosen: Transition, target: State, scope: Scope, *,
          entry_sequence: int, now: datetime) -> _Move:
    """Run the exit actions of `source`, the transition's, then the entry actions of `target` (raises
    ExecutionError)."""
    changes: dict[str, Any] = {}
    removed: set[str] = set()
    run_actions(source.exit_actions, scope, changes, removed)
    run_actions(chosen.actions, scope, changes, removed)
    scope.instance = {**scope.instance, "state": target.id}
    run_actions(target.entry_actions, scope, changes, removed)
    listening = interests_of(instance.id, instance.given_interests, target.interests, scope)
    leaving = target.id != source.id
    timers = schedule_visit(target, instance_id=instance.id, entry_sequence=entry_sequence, base=now,
                            evaluate=scope.evaluate) if leaving else []
    return _Move(source, chosen, target, changes, removed, listening, leaving, timers)


def _record_move(recorder: Recorder, instance: Instance, trigger: Trigger, move: _Move) -> None:
    source, target = move.source, move.target
    applied = {"transition": move.transition.id, "from": source.id, "to": target.id, "topic": trigger.topic,
               "content": trigger.content, "contextChanges": context_changes(move.changes, move.removed)}
    if move.listening != instance.interests:
        applied["interests"] = list(move.listening)
    recorder.record(EventType.TRANSITION_APPLIED, applied)
    if target.terminal:
        record_all(recorder, EventType.TIMER_CANCELLED,
                  cancel_timers(instance.timers, reason=f"the instance completed in state {target.id!r}", kinds=ALL))
    elif move.leaving:
        record_all(recorder, EventType.TIMER_CANCELLED,
                  cancel_timers(instance.timers, reason=f"the instance left state {source.id!r}"))
    record_all(recorder, EventType.TIMER_SCHEDULED, move.timers)
    if target.terminal:
        recorder.record(EventType.COMPLETED, {"state": target.id})


def _ignored(instance: Instance, recorder: Recorder, trigger: Trigger, reason: str, services: Services) -> Decision:
    recorder.record(EventType.TRIGGER_IGNORED, {"topic": trigger.topic, "reason": reason,
                                                **audited_content(trigger.content, services.audit_content_limit)})
    return decided(instance, recorder, Outcome.IGNORED, reason)
