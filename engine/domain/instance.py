"""The workflow instance aggregate: what it is (a fold of its events) and what a command does to it.

`decide_*` functions take the instance, its pinned definition, the command and the time, run
conditions and actions, and return the events of one commit. `apply` folds an event into the
instance; the instance after a decision is always `fold(previous, events)`, never built apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.domain.audit import audited_content
from engine.domain.definition import ActionStep, ConditionStep, State, WorkflowDefinition
from engine.domain.errors import ExecutionError, InvalidCommand, RecoveryRefused
from engine.domain.events import Event, EventType, timestamp
from engine.domain.extensions import ContextChange, Scope, Services
from engine.domain.interests import interests_of
from engine.domain.timers import PendingTimer
from engine.domain.visits import ALL, cancel_timers, schedule_visit


class Status(StrEnum):
    WAITING = "Waiting"
    COMPLETE = "Complete"
    FAULTED = "Faulted"
    TERMINATED = "Terminated"


class Outcome(StrEnum):
    CREATED = "created"
    APPLIED = "applied"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAULTED = "faulted"
    RECOVERED = "recovered"
    TERMINATED = "terminated"
    MIGRATED = "migrated"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Trigger:
    topic: str
    id: str
    content: Any = None
    subjects: tuple[str, ...] = ()
    # The client's precondition (`If-Match: "<version>"`): apply only while the instance is at this version.
    expected_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "content": self.content}


@dataclass(frozen=True, slots=True)
class Fault:
    sequence: int
    trigger_id: str | None
    where: str
    error_type: str
    message: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "triggerId": self.trigger_id, "where": self.where,
                "errorType": self.error_type, "message": self.message, "at": self.at}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Fault:
        return cls(doc["sequence"], doc.get("triggerId"), doc["where"], doc["errorType"], doc["message"],
                   doc.get("at", ""))


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    workflow_id: str
    workflow_version: int
    state: str
    status: Status
    context: Mapping[str, Any]
    interests: tuple[str, ...]
    version: int
    fault: Fault | None = None
    created_at: str = ""
    updated_at: str = ""
    timers: tuple[PendingTimer, ...] = ()  # pending, in the order scheduled (engine/domain/timers.py)
    entry_sequence: int = 0  # the event that began the current visit of `state`
    given_interests: tuple[str, ...] = ()  # given at creation; part of `interests` while it lives (interests.py)

    def timer(self, timer_id: str, entry_sequence: int | None) -> PendingTimer | None:
        return next((t for t in self.timers if t.id == timer_id and t.entry_sequence == entry_sequence), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflowId": self.workflow_id,
            "workflowVersion": self.workflow_version,
            "state": self.state,
            "status": str(self.status),
            "context": dict(self.context),
            "interests": list(self.interests),
            "version": self.version,
            "fault": self.fault.to_dict() if self.fault else None,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "timers": [timer.to_dict() for timer in self.timers],
            "entrySequence": self.entry_sequence,
            "givenInterests": list(self.given_interests),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Instance:
        fault = doc.get("fault")
        return cls(
            id=doc["id"],
            workflow_id=doc["workflowId"],
            workflow_version=int(doc["workflowVersion"]),
            state=doc["state"],
            status=Status(doc["status"]),
            context=doc.get("context") or {},
            interests=tuple(doc.get("interests") or ()),
            version=int(doc["version"]),
            fault=Fault.from_dict(fault) if fault else None,
            created_at=doc.get("createdAt", ""),
            updated_at=doc.get("updatedAt", ""),
            timers=tuple(PendingTimer.from_dict(timer) for timer in doc.get("timers") or ()),
            entry_sequence=int(doc.get("entrySequence") or 0),
            # Kept before interests followed the state: then the interests were exactly those given.
            given_interests=tuple(doc.get("givenInterests", doc.get("interests")) or ()),
        )


# ---------------------------------------------------------------------------------------------- fold

def _changed(context: Mapping[str, Any], change: Mapping[str, Any] | None) -> dict[str, Any]:
    result = dict(context)
    if change:
        result.update(change.get("set") or {})
        for key in change.get("removed") or ():
            result.pop(key, None)
    return result


def apply(instance: Instance | None, event: Event) -> Instance:
    """The instance after one more event. Pure: the only way instance state ever changes."""
    data = event.data
    if event.type is EventType.CREATED:
        return Instance(
            id=event.instance_id,
            workflow_id=data["workflowId"],
            workflow_version=int(data["workflowVersion"]),
            state=data["state"],
            status=Status.WAITING,
            context=dict(data.get("context") or {}),
            interests=tuple(data.get("interests") or ()),
            version=event.sequence,
            created_at=event.at,
            updated_at=event.at,
            entry_sequence=event.sequence,
            given_interests=tuple(data.get("givenInterests", data.get("interests")) or ()),
        )
    if instance is None:
        raise ValueError(f"event {event.sequence} of {event.instance_id!r} ({event.type}) comes before Created")
    state, status, context, fault = instance.state, instance.status, instance.context, instance.fault
    interests = instance.interests
    version, timers, entry = instance.workflow_version, instance.timers, instance.entry_sequence
    match event.type:
        case EventType.TRANSITION_APPLIED:
            state, context = data["to"], _changed(context, data.get("contextChanges"))
            interests = tuple(data["interests"]) if "interests" in data else interests
            if data["to"] != data["from"]:  # a transition back to the same state keeps the visit
                entry = event.sequence
        case EventType.COMPLETED:
            status, interests = Status.COMPLETE, ()  # a finished instance listens to nothing
        case EventType.FAULTED:
            status = Status.FAULTED
            fault = Fault(event.sequence, event.trigger_id, data["where"], data["errorType"], data["message"], event.at)
        case EventType.RECOVERED:
            state, status, context, fault = data["state"], Status.WAITING, dict(data.get("context") or {}), None
            interests = tuple(data["interests"]) if "interests" in data else interests
            if data.get("mode") == "reset":  # a reset begins a new visit, even of the same state
                entry = event.sequence
        case EventType.TERMINATED:
            status, interests = Status.TERMINATED, ()
        case EventType.TIMER_SCHEDULED:
            timer = PendingTimer.from_dict(data, scheduled_at=event.at)
            timers = (*(t for t in timers if t.key != timer.key), timer)
        case EventType.TIMER_FIRED | EventType.TIMER_CANCELLED:
            key = (data["timerId"], data.get("entrySequence"))
            timers = tuple(t for t in timers if t.key != key)
        case EventType.MIGRATED:  # the visit goes on, on the new version
            state, version = data["to"], int(data["toVersion"])
            context = _changed(context, data.get("contextChanges"))
            interests = tuple(data["interests"]) if "interests" in data else interests
        case _:  # TriggerIgnored, TriggerRejected: recorded, nothing else changes
            pass
    # Built directly rather than with dataclasses.replace: this runs for every event of every trigger.
    return Instance(instance.id, instance.workflow_id, version, state, status, context,
                    interests, event.sequence, fault, instance.created_at, event.at, timers, entry,
                    instance.given_interests)


def fold(instance: Instance | None, events: Iterable[Event]) -> Instance | None:
    for event in events:
        instance = apply(instance, event)
    return instance


# ---------------------------------------------------------------------------------------------- decide

@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    events: tuple[Event, ...]
    instance: Instance
    reason: str | None = None


class _Recorder:
    """Numbers the events of one commit from the instance's next sequence."""

    def __init__(self, instance_id: str, version: int, trigger_id: str | None, at: str) -> None:
        self.instance_id = instance_id
        self.next = version + 1
        self.trigger_id = trigger_id
        self.at = at
        self.events: list[Event] = []

    def record(self, type_: EventType, data: Mapping[str, Any]) -> None:
        self.events.append(Event(self.instance_id, self.next, type_, self.at, self.trigger_id, data))
        self.next += 1


def _view(instance_id: str, workflow: WorkflowDefinition, state: str, status: Status, version: int) -> dict[str, Any]:
    return {"id": instance_id, "workflowId": workflow.id, "workflowVersion": workflow.version,
            "state": state, "status": str(status), "version": version}


def _check(conditions: tuple[ConditionStep, ...], scope: Scope) -> ConditionStep | None:
    """The first condition that does not hold, or None. Raises ExecutionError if one errors."""
    for step in conditions:
        try:
            holds = step.impl.holds(scope, step.where)
        except ExecutionError:
            raise
        except Exception as e:  # a registered condition's own bug must fault, not crash the worker
            raise ExecutionError(step.where, type(e).__name__, str(e) or repr(e)) from e
        if not holds:
            return step
    return None


def _run(actions: tuple[ActionStep, ...], scope: Scope, changes: dict[str, Any], removed: set[str]) -> None:
    for step in actions:
        try:
            change: ContextChange = step.impl.run(scope, step.where)
        except ExecutionError:
            raise
        except Exception as e:
            raise ExecutionError(step.where, type(e).__name__, str(e) or repr(e)) from e
        if change.empty:
            continue
        context = dict(scope.context)
        for key, value in change.set.items():
            context[key] = value
            changes[key] = value
            removed.discard(key)
        for key in change.remove:
            context.pop(key, None)
            changes.pop(key, None)
            removed.add(key)
        scope.context = context


def _enter(state: State, scope: Scope, changes: dict[str, Any], removed: set[str]) -> None:
    """Enter `state` with no trigger to weigh (creation, a retried creation): a false entry condition is a fault."""
    failed = _check(state.entry_conditions, scope)
    if failed is not None:
        raise ExecutionError(failed.where, "EntryConditionFailed",
                             f"an entry condition of state {state.id!r} does not hold")
    _run(state.entry_actions, scope, changes, removed)


def _context_changes(changes: dict[str, Any], removed: set[str]) -> dict[str, Any]:
    return {"set": changes, "removed": sorted(removed)}


def _fault(recorder: _Recorder, error: ExecutionError, trigger: Trigger | None, transition: str | None) -> None:
    recorder.record(EventType.FAULTED, {
        "where": error.where, "errorType": error.error_type, "message": error.message,
        "trigger": trigger.to_dict() if trigger else None, "transition": transition,
    })


def decide_create(workflow: WorkflowDefinition, instance_id: str, *, context: Mapping[str, Any],
                  interests: Iterable[str], trigger_id: str, now: datetime, services: Services) -> Decision:
    """Create an instance in the initial state: run its entry conditions and actions (a failure faults)."""
    at = timestamp(now)
    recorder = _Recorder(instance_id, 0, trigger_id, at)
    initial = workflow.state(workflow.initial_state)
    scope = Scope(_view(instance_id, workflow, initial.id, Status.WAITING, 1), dict(context), None, 1, services)
    changes: dict[str, Any] = {}
    removed: set[str] = set()
    given = sorted(set(interests))
    created = {"workflowId": workflow.id, "workflowVersion": workflow.version, "state": initial.id,
               "givenInterests": given}
    try:
        _enter(initial, scope, changes, removed)
        timers = schedule_visit(initial, instance_id=instance_id, entry_sequence=1, base=now, evaluate=scope.evaluate)
        listening = interests_of(instance_id, given, initial.interests, scope)
    except ExecutionError as error:
        recorder.record(EventType.CREATED, {**created, "context": dict(context),
                                            "interests": list(interests_of(instance_id, given, (), scope))})
        _fault(recorder, error, None, None)
        outcome = Outcome.FAULTED
    else:
        recorder.record(EventType.CREATED, {**created, "interests": list(listening), "context": scope.context,
                                            "contextChanges": _context_changes(changes, removed)})
        _record_all(recorder, EventType.TIMER_SCHEDULED, timers)
        if initial.terminal:
            recorder.record(EventType.COMPLETED, {"state": initial.id})
        outcome = Outcome.CREATED
    instance = fold(None, recorder.events)
    assert instance is not None
    return Decision(outcome, tuple(recorder.events), instance)


VERSION_MISMATCH = "version-mismatch"  # the `reason` of a trigger refused by its expected version


def is_version_mismatch(events: Sequence[Event]) -> bool:
    """Whether a commit's events are the rejection of a trigger whose expected version did not hold."""
    return any(e.type is EventType.TRIGGER_REJECTED and e.data.get("reason") == VERSION_MISMATCH for e in events)


def decide_trigger(instance: Instance, workflow: WorkflowDefinition, trigger: Trigger, *, now: datetime,
                   services: Services) -> Decision:
    """What one trigger does to the instance: applied, ignored (with why), rejected or faulted."""
    at = timestamp(now)
    recorder = _Recorder(instance.id, instance.version, trigger.id, at)

    def done(outcome: Outcome, reason: str | None = None) -> Decision:
        after = fold(instance, recorder.events)
        assert after is not None
        return Decision(outcome, tuple(recorder.events), after, reason)

    if trigger.expected_version is not None and trigger.expected_version != instance.version:
        detail = (f"the trigger expected the instance at version {trigger.expected_version}; "
                  f"it is at version {instance.version}")
        recorder.record(EventType.TRIGGER_REJECTED, {
            "topic": trigger.topic, "status": str(instance.status), "reason": VERSION_MISMATCH, "detail": detail,
            "expectedVersion": trigger.expected_version, "version": instance.version,
            **audited_content(trigger.content, services.audit_content_limit)})
        return done(Outcome.REJECTED, detail)
    if instance.status is not Status.WAITING:
        reason = f"the instance is {instance.status} and accepts no trigger"
        recorder.record(EventType.TRIGGER_REJECTED, {"topic": trigger.topic, "status": str(instance.status),
                                                     "reason": reason,
                                                     **audited_content(trigger.content, services.audit_content_limit)})
        return done(Outcome.REJECTED, reason)

    source = workflow.state(instance.state)
    scope = Scope(_view(instance.id, workflow, source.id, instance.status, instance.version), dict(instance.context),
                  trigger.to_dict(), instance.version + 1, services)
    transition_id: str | None = None
    try:
        failed = _check(source.exit_conditions, scope)
        if failed is not None:
            reason = f"exit condition {failed.where} of state {source.id!r} does not hold"
            return _ignored(recorder, trigger, reason, done, services)
        chosen = None
        for transition in source.transitions:
            # Marain.Workflow's rule: a transition without a topic answers any trigger its conditions accept.
            answers = transition.trigger is None or transition.trigger == trigger.topic
            if answers and _check(transition.conditions, scope) is None:
                chosen = transition
                break
        if chosen is None:
            if any(t.trigger in (None, trigger.topic) for t in source.transitions):
                reason = (f"no transition for topic {trigger.topic!r} from state {source.id!r} "
                          "has all its conditions true")
            else:
                reason = f"state {source.id!r} has no transition for topic {trigger.topic!r}"
            return _ignored(recorder, trigger, reason, done, services)
        transition_id = chosen.id
        target = workflow.state(chosen.target)
        failed = _check(target.entry_conditions, scope)
        if failed is not None:
            reason = f"entry condition {failed.where} of target state {target.id!r} does not hold"
            return _ignored(recorder, trigger, reason, done, services)
        changes: dict[str, Any] = {}
        removed: set[str] = set()
        _run(source.exit_actions, scope, changes, removed)
        _run(chosen.actions, scope, changes, removed)
        scope.instance = {**scope.instance, "state": target.id}
        _run(target.entry_actions, scope, changes, removed)
        listening = interests_of(instance.id, instance.given_interests, target.interests, scope)
        leaving = target.id != source.id  # a transition back to the same state keeps the visit and its timers
        timers = schedule_visit(target, instance_id=instance.id, entry_sequence=recorder.next, base=now,
                                evaluate=scope.evaluate) if leaving else []
    except ExecutionError as error:
        _fault(recorder, error, trigger, transition_id)
        return done(Outcome.FAULTED, error.message)
    applied = {"transition": chosen.id, "from": source.id, "to": target.id, "topic": trigger.topic,
               "content": trigger.content, "contextChanges": _context_changes(changes, removed)}
    if listening != instance.interests:
        applied["interests"] = list(listening)
    recorder.record(EventType.TRANSITION_APPLIED, applied)
    if target.terminal:
        _record_all(recorder, EventType.TIMER_CANCELLED,
                    cancel_timers(instance.timers, reason=f"the instance completed in state {target.id!r}", kinds=ALL))
    elif leaving:
        _record_all(recorder, EventType.TIMER_CANCELLED,
                    cancel_timers(instance.timers, reason=f"the instance left state {source.id!r}"))
    _record_all(recorder, EventType.TIMER_SCHEDULED, timers)
    if target.terminal:
        recorder.record(EventType.COMPLETED, {"state": target.id})
    return done(Outcome.APPLIED)


def _record_all(recorder: _Recorder, type_: EventType, items: Iterable[Mapping[str, Any]]) -> None:
    for data in items:
        recorder.record(type_, data)


def _ignored(recorder: _Recorder, trigger: Trigger, reason: str, done: Any, services: Services) -> Decision:
    recorder.record(EventType.TRIGGER_IGNORED, {"topic": trigger.topic, "reason": reason,
                                                **audited_content(trigger.content, services.audit_content_limit)})
    result: Decision = done(Outcome.IGNORED, reason)
    return result


# ---------------------------------------------------------------------------------------------- recovery

class RecoveryMode(StrEnum):
    RETRY = "retry"
    RESET = "reset"


def decide_recover(instance: Instance, workflow: WorkflowDefinition, *, mode: RecoveryMode, by: str, reason: str,
                   recovery_id: str, now: datetime, services: Services, state: str | None = None,
                   as_of: Instance | None = None, context_patch: Mapping[str, Any] | None = None,
                   force: bool = False, retry_trigger: Trigger | None = None) -> Decision:
    """Recover an instance by appending events, never by editing it.

    `retry` re-runs the trigger that faulted it (`retry_trigger`, read from the Faulted event) against the
    pinned definition; a fault at creation re-runs the state's entry conditions and actions. `reset` moves
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
    at = timestamp(now)
    recorder = _Recorder(instance.id, instance.version, recovery_id, at)
    details: dict[str, Any] = {"mode": str(mode), "by": by, "reason": reason,
                               "previousStatus": str(instance.status),
                               "fault": instance.fault.to_dict() if instance.fault else None}
    if mode is RecoveryMode.RESET:
        target_state = state if state is not None else (as_of.state if as_of is not None else instance.state)
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
            listening = _listening(instance, workflow, target_state, context, recorder.next, services)
        except ExecutionError as error:  # the reset happens; the state's interests cannot be computed: a fault
            recorder.record(EventType.RECOVERED, {**details, "state": target_state, "context": context})
            _fault(recorder, error, None, None)
            after = fold(instance, recorder.events)
            assert after is not None
            return Decision(Outcome.FAULTED, tuple(recorder.events), after, error.message)
        recorder.record(EventType.RECOVERED, {**details, "state": target_state, "context": context,
                                              "interests": list(listening)})
        outcome = _revisit(recorder, instance, workflow.state(target_state), context, entry, workflow, now, services)
        after = fold(instance, recorder.events)
        assert after is not None
        return Decision(outcome, tuple(recorder.events), after)

    recovered_data = {**details, "state": instance.state, "context": dict(instance.context)}
    if retry_trigger is not None:
        # A force-recovered Complete instance had none: it listens again, as in its state. If they cannot be
        # computed they are kept as they are; the retried trigger recomputes them when it moves the instance.
        with contextlib.suppress(ExecutionError):
            recovered_data["interests"] = list(_listening(instance, workflow, instance.state, instance.context,
                                                          recorder.next, services))
    recorder.record(EventType.RECOVERED, recovered_data)
    recovered = fold(instance, recorder.events)
    assert recovered is not None
    if retry_trigger is not None:
        retried = decide_trigger(recovered, workflow, retry_trigger, now=now, services=services)
        # The retried trigger's events keep its own id; the commit is known by the recovery's id.
        events = (*recorder.events, *(_renumber(e, recorder.next + n) for n, e in enumerate(retried.events)))
        after = fold(instance, events)
        assert after is not None
        return Decision(retried.outcome, events, after, retried.reason)
    # A fault at creation: run the current state's entry conditions and actions again.
    current = workflow.state(recovered.state)
    scope = Scope(_view(instance.id, workflow, current.id, Status.WAITING, recovered.version), dict(recovered.context),
                  None, recorder.next, services)
    changes: dict[str, Any] = {}
    removed: set[str] = set()
    try:
        _enter(current, scope, changes, removed)
        listening = interests_of(instance.id, instance.given_interests, current.interests, scope)
    except ExecutionError as error:
        _fault(recorder, error, None, None)
        outcome = Outcome.FAULTED
    else:
        replaced = {**details, "state": current.id, "context": scope.context, "interests": list(listening)}
        if changes or removed:
            replaced["contextChanges"] = _context_changes(changes, removed)
        recorder.events[-1] = Event(instance.id, recorder.events[-1].sequence, EventType.RECOVERED, at, recovery_id,
                                    replaced)
        if instance.fault is not None and not recovered.timers:  # a visit that faulted as it began scheduled none
            try:
                timers = schedule_visit(current, instance_id=instance.id, entry_sequence=recovered.entry_sequence,
                                        base=now, evaluate=scope.evaluate)
            except ExecutionError as error:
                _fault(recorder, error, None, None)
                after = fold(instance, recorder.events)
                assert after is not None
                return Decision(Outcome.FAULTED, tuple(recorder.events), after)
            _record_all(recorder, EventType.TIMER_SCHEDULED, timers)
        if current.terminal:
            recorder.record(EventType.COMPLETED, {"state": current.id})
        outcome = Outcome.RECOVERED
    after = fold(instance, recorder.events)
    assert after is not None
    return Decision(outcome, tuple(recorder.events), after)


def _listening(instance: Instance, workflow: WorkflowDefinition, state_id: str, context: Mapping[str, Any],
               sequence: int, services: Services) -> tuple[str, ...]:
    """The interests of `instance` in state `state_id` with `context` (raises ExecutionError)."""
    scope = Scope(_view(instance.id, workflow, state_id, Status.WAITING, instance.version), dict(context), None,
                  sequence, services)
    return interests_of(instance.id, instance.given_interests, workflow.state(state_id).interests, scope)


def _revisit(recorder: _Recorder, instance: Instance, target: State, context: dict[str, Any], entry: int,
             workflow: WorkflowDefinition, now: datetime, services: Services) -> Outcome:
    """After a reset to `target` (a new visit begun at event `entry`): the old visit's timers cancelled, the new
    one's scheduled, or Completed. An `after` that fails faults the instance again."""
    if target.terminal:
        _record_all(recorder, EventType.TIMER_CANCELLED,
                    cancel_timers(instance.timers, reason=f"the instance was reset to final state {target.id!r}",
                                  kinds=ALL))
        recorder.record(EventType.COMPLETED, {"state": target.id})
        return Outcome.RECOVERED
    _record_all(recorder, EventType.TIMER_CANCELLED,
                cancel_timers(instance.timers, reason=f"the instance was reset to state {target.id!r}"))
    scope = Scope(_view(instance.id, workflow, target.id, Status.WAITING, entry), context, None, recorder.next,
                  services)
    try:
        timers = schedule_visit(target, instance_id=instance.id, entry_sequence=entry, base=now,
                                evaluate=scope.evaluate)
    except ExecutionError as error:
        _fault(recorder, error, None, None)
        return Outcome.FAULTED
    _record_all(recorder, EventType.TIMER_SCHEDULED, timers)
    return Outcome.RECOVERED


def _renumber(event: Event, sequence: int) -> Event:
    return Event(event.instance_id, sequence, event.type, event.at, event.trigger_id, event.data)


def decide_terminate(instance: Instance, *, by: str, reason: str, command_id: str, now: datetime) -> Decision:
    """End an instance for good. Refused for one that is already Complete or Terminated."""
    if instance.status in (Status.TERMINATED, Status.COMPLETE):
        raise RecoveryRefused("", instance.id, f"the instance is {instance.status} and cannot be terminated")
    recorder = _Recorder(instance.id, instance.version, command_id, timestamp(now))
    recorder.record(EventType.TERMINATED, {"by": by, "reason": reason, "previousStatus": str(instance.status),
                                           "state": instance.state})
    _record_all(recorder, EventType.TIMER_CANCELLED,
                cancel_timers(instance.timers, reason="the instance was terminated", kinds=ALL, by=by))
    after = fold(instance, recorder.events)
    assert after is not None
    return Decision(Outcome.TERMINATED, tuple(recorder.events), after)
