"""An instance begins: `decide_create` runs the initial state's entry conditions and actions (a failure faults
the new instance) and schedules its timers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from engine.domain.decision import Decision, Outcome, Recorder, instance_view, record_all, record_fault
from engine.domain.definition import WorkflowDefinition
from engine.domain.errors import ExecutionError
from engine.domain.events import EventType, timestamp
from engine.domain.extensions import Scope, Services
from engine.domain.fold import fold
from engine.domain.instance import Status
from engine.domain.interests import interests_of
from engine.domain.steps import context_changes, enter_state
from engine.domain.visits import schedule_visit

__all__ = ["decide_create"]


def decide_create(workflow: WorkflowDefinition, instance_id: str, *, context: Mapping[str, Any],
                  interests: Iterable[str], trigger_id: str, now: datetime, services: Services) -> Decision:
    """Create an instance in the initial state: run its entry conditions and actions (a failure faults)."""
    at = timestamp(now)
    recorder = Recorder(instance_id, 0, trigger_id, at)
    initial = workflow.state(workflow.initial_state)
    scope = Scope(instance_view(instance_id, workflow, initial.id, Status.WAITING, 1), dict(context), None, 1, services)
    changes: dict[str, Any] = {}
    removed: set[str] = set()
    given = sorted(set(interests))
    created = {"workflowId": workflow.id, "workflowVersion": workflow.version, "state": initial.id,
               "givenInterests": given}
    try:
        enter_state(initial, scope, changes, removed)
        timers = schedule_visit(initial, instance_id=instance_id, entry_sequence=1, base=now, evaluate=scope.evaluate)
        listening = interests_of(instance_id, given, initial.interests, scope)
    except ExecutionError as error:
        recorder.record(EventType.CREATED, {**created, "context": dict(context),
                                            "interests": list(interests_of(instance_id, given, (), scope))})
        record_fault(recorder, error, None, None, step=1)
        outcome = Outcome.FAULTED
    else:
        recorder.record(EventType.CREATED, {**created, "interests": list(listening), "context": scope.context,
                                            "contextChanges": context_changes(changes, removed)})
        record_all(recorder, EventType.TIMER_SCHEDULED, timers)
        if initial.terminal:
            recorder.record(EventType.COMPLETED, {"state": initial.id})
        outcome = Outcome.CREATED
    instance = fold(None, recorder.events)
    assert instance is not None
    return Decision(outcome, tuple(recorder.events), instance)
