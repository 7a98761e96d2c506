"""Recovering a faulted instance (retry or reset) and terminating one: operators' commands, recorded as events,
never edits."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.domain.decision import (
    Decision,
    Outcome,
    Recorder,
    decided,
    instance_view,
    record_all,
    record_fault,
)
from engine.domain.definition import State, WorkflowDefinition
from engine.domain.errors import ExecutionError, InvalidCommand, RecoveryRefused
from engine.domain.events import Event, EventType, timestamp
from engine.domain.extensions import Scope, Services
from engine.domain.fold import fold
from engine.domain.instance import Instance, Status, Trigger
from engine.domain.interests import interests_of
from engine.domain.steps import context_changes, enter_state, interests_in_state
from engine.domain.triggering import decide_trigger
from engine.domain.visits import ALL, cancel_timers, schedule_visit

__all__ = ["RecoveryMode", "decide_recover", "decide_terminate"]


class RecoveryMode(StrEnum):
    RETRY = "retry"
    RESET = "reset"


def decide_recover(instance: Instance, workflow: WorkflowDefinition, *, mode: RecoveryMode, by: str, reason: str,
                   recovery_id: str, now: datetime, services: Services, state: str | None = None,
                   as_of: Instance | None = None, context_patch: Mapping[str, Any] | None = None,
                   force: bool = False, retry_trigger: Trigger | None = None,
                   retry_step: int | None = None) -> Decision:
    """Recover an instance by appending events, never by editing it.

    `retry` re-runs the trigger that faulted it (`retry_trigger`, read from the Faulted event) against the
    pinned definition (as the step `retry_step`, the Faulted event's, so that its `http` calls carry the same
    idempotency keys); a fault at creation re-runs the state's entry conditions and actions (as step 1). `reset` moves
    it to `state`, or to its state and context as of an earlier event (`as_of`), with `context_patch`
    merged in (a null value removes the key). One commit: `Recovered`, then the retry's own events.
    Raises `RecoveryRefused` for an instance that is not faulted (unless `force`) or is terminated, and
    `InvalidCommand` for a state the definition does not have.
    """
    if instance.status is Status.TERMINATED:
        raise RecoveryRefused("", instance.id, "the instance is terminated and cannot be recovered")
    if instance.status is not Status.FAULTED and not force:
        raise RecoveryRefused("", instance.id, f"the instance is {instance.status}, not Faulted "
                                               "(use force to recover it anyway)")
    recorder = Recorder(instance.id, instance.version, recovery_id, timestamp(now))
    details: dict[str, Any] = {"mode": str(mode), "by": by, "reason": reason,
                               "previousStatus": str(instance.status),
                               "fault": instance.fault.to_dict() if instance.fault else None}
    if mode is RecoveryMode.RESET:
        target_state = state if state is not None else (as_of.state if as_of is not None else instance.state)
        return _reset(instance, workflow, recorder, details, target_state, as_of=as_of,
                      context_patch=context_patch, now=now, services=services)
    recovered_data = {**details, "state": instance.state, "context": dict(instance.context)}
    if retry_trigger is not None:
        # A force-recovered Complete instance had none: it listens again, as in its state. If they cannot be
        # computed they are kept as they are; the retried trigger recomputes them when it moves the instance.
        with contextlib.suppress(ExecutionError):
            recovered_data["interests"] = list(interests_in_state(instance, workflow, instance.state,
                                                                  instance.context, recorder.next, services))
    recorder.record(EventType.RECOVERED, recovered_data)
    recovered = fold(instance, recorder.events)
    assert recovered is not None
    if retry_trigger is not None:
        return _retry(instance, recovered, workflow, recorder, retry_trigger, retry_step=retry_step, now=now,
                      services=services)
    return _reenter(instance, recovered, workflow, recorder, details, now=now, services=services)


def _reset(instance: Instance, workflow: WorkflowDefinition, recorder: Recorder, details: dict[str, Any],
           target_state: str, *, as_of: Instance | None, context_patch: Mapping[str, Any] | None, now: datetime,
           services: Services) -> Decision:
    """Move the instance to `target_state` with its context (as of `as_of`, with `context_patch` merged in): a new
    visit of that state."""
    if target_state not in workflow.states:
        raise InvalidCommand("state", f"workflow {workflow.id!r} v{workflow.version} has no state {target_state!r}")
    context = dict(as_of.context if as_of is not None else instance.context)
    for key, value in (context_patch or {}).items():
        if value is None:
            context.pop(key, None)
        else:
            context[key] = value
    if as_of is not None:
        details["toSequence"] = as_of.version
    entry = recorder.next
    try:
        listens = interests_in_state(instance, workflow, target_state, context, recorder.next, services)
    except ExecutionError as error:  # the reset happens; the state's interests cannot be computed: a fault
        recorder.record(EventType.RECOVERED, {**details, "state": target_state, "context": context})
        record_fault(recorder, error, None, None, step=entry)
        return decided(instance, recorder, Outcome.FAULTED, error.message)
    recorder.record(EventType.RECOVERED, {**details, "state": target_state, "context": context,
                                          "interests": list(listens)})
    outcome = _revisit(recorder, instance, workflow.state(target_state), context, entry, workflow, now, services)
    return decided(instance, recorder, outcome)


def _retry(instance: Instance, recovered: Instance, workflow: WorkflowDefinition, recorder: Recorder,
           retry_trigger: Trigger, *, retry_step: int | None, now: datetime, services: Services) -> Decision:
    """Run the trigger that faulted the instance again, after `Recovered`, in the same commit."""
    retried = decide_trigger(recovered, workflow, retry_trigger, now=now, services=services, step=retry_step)
    # The retried trigger's events keep its own id; the commit is known by the recovery's id.
    events = (*recorder.events, *(_renumber(e, recorder.next + n) for n, e in enumerate(retried.events)))
    after = fold(instance, events)
    assert after is not None
    return Decision(retried.outcome, events, after, retried.reason)


def _reenter(instance: Instance, recovered: Instance, workflow: WorkflowDefinition, recorder: Recorder,
             details: dict[str, Any], *, now: datetime, services: Services) -> Decision:
    """A fault at creation: run the current state's entry conditions and actions again (and schedule the timers
    of a visit that faulted as it began); `Recovered` records what they changed."""
    current = workflow.state(recovered.state)
    scope = Scope(instance_view(instance.id, workflow, current.id, Status.WAITING, recovered.version),
                  dict(recovered.context), None, recorder.next, services, step=1)
    changes: dict[str, Any] = {}
    removed: set[str] = set()
    try:
        enter_state(current, scope, changes, removed)
        listens = interests_of(instance.id, instance.given_interests, current.interests, scope)
    except ExecutionError as error:
        record_fault(recorder, error, None, None, step=1)
        return decided(instance, recorder, Outcome.FAULTED)
    replaced = {**details, "state": current.id, "context": scope.context, "interests": list(listens)}
    if changes or removed:
        replaced["contextChanges"] = context_changes(changes, removed)
    last = recorder.events[-1]
    recorder.events[-1] = Event(instance.id, last.sequence, EventType.RECOVERED, last.at, last.trigger_id, replaced)
    if instance.fault is not None and not recovered.timers:  # a visit that faulted as it began scheduled none
        try:
            timers = schedule_visit(current, instance_id=instance.id, entry_sequence=recovered.entry_sequence,
                                    base=now, evaluate=scope.evaluate)
        except ExecutionError as error:
            record_fault(recorder, error, None, None, step=1)
            return decided(instance, recorder, Outcome.FAULTED)
        record_all(recorder, EventType.TIMER_SCHEDULED, timers)
    if current.terminal:
        recorder.record(EventType.COMPLETED, {"state": current.id})
    return decided(instance, recorder, Outcome.RECOVERED)


def _revisit(recorder: Recorder, instance: Instance, target: State, context: dict[str, Any], entry: int,
             workflow: WorkflowDefinition, now: datetime, services: Services) -> Outcome:
    """After a reset to `target` (a new visit begun at event `entry`): the old visit's timers cancelled, the new
    one's scheduled, or Completed. An `after` that fails faults the instance again."""
    if target.terminal:
        record_all(recorder, EventType.TIMER_CANCELLED,
                   cancel_timers(instance.timers, reason=f"the instance was reset to final state {target.id!r}",
                                 kinds=ALL))
        recorder.record(EventType.COMPLETED, {"state": target.id})
        return Outcome.RECOVERED
    record_all(recorder, EventType.TIMER_CANCELLED,
               cancel_timers(instance.timers, reason=f"the instance was reset to state {target.id!r}"))
    scope = Scope(instance_view(instance.id, workflow, target.id, Status.WAITING, entry), context, None, recorder.next,
                  services)
    try:
        timers = schedule_visit(target, instance_id=instance.id, entry_sequence=entry, base=now,
                                evaluate=scope.evaluate)
    except ExecutionError as error:
        record_fault(recorder, error, None, None, step=scope.step)
        return Outcome.FAULTED
    record_all(recorder, EventType.TIMER_SCHEDULED, timers)
    return Outcome.RECOVERED


def _renumber(event: Event, sequence: int) -> Event:
    return Event(event.instance_id, sequence, event.type, event.at, event.trigger_id, event.data)


def decide_terminate(instance: Instance, *, by: str, reason: str, command_id: str, now: datetime) -> Decision:
    """End an instance for good. Refused for one that is already Complete or Terminated."""
    if instance.status in (Status.TERMINATED, Status.COMPLETE):
        raise RecoveryRefused("", instance.id, f"the instance is {instance.status} and cannot be terminated")
    recorder = Recorder(instance.id, instance.version, command_id, timestamp(now))
    recorder.record(EventType.TERMINATED, {"by": by, "reason": reason, "previousStatus": str(instance.status),
                                           "state": instance.state})
    record_all(recorder, EventType.TIMER_CANCELLED,
               cancel_timers(instance.timers, reason="the instance was terminated", kinds=ALL, by=by))
    after = fold(instance, recorder.events)
    assert after is not None
    return Decision(Outcome.TERMINATED, tuple(recorder.events), after)
