"""What a command decides, and how it is recorded.

`decide_*` functions (creation.py, triggering.py, recovery.py, migration.py, scheduling.py) take the instance, its
pinned definition, the command and the time, run conditions and actions, and return a `Decision`: its outcome and
the events of one commit, numbered by a `Recorder` from the instance's next sequence, with the instance after them
(always `fold(previous, events)`, never built apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.domain.definition import WorkflowDefinition
from engine.domain.errors import ExecutionError
from engine.domain.events import Event, EventType
from engine.domain.fold import fold
from engine.domain.instance import Instance, Status, Trigger

__all__ = ["Decision", "Outcome", "Recorder", "decided", "instance_view", "record_all", "record_fault"]


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
class Decision:
    """What a command did: its outcome, the events of its commit, the instance after them, and why (an ignored or
    rejected trigger, a fault)."""

    outcome: Outcome
    events: tuple[Event, ...]
    instance: Instance
    reason: str | None = None


class Recorder:
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


def instance_view(instance_id: str, workflow: WorkflowDefinition, state: str, status: Status,
                  version: int) -> dict[str, Any]:
    """The instance as the expressions of a step see it (`instance.state`, `instance.version`, ...)."""
    return {"id": instance_id, "workflowId": workflow.id, "workflowVersion": workflow.version,
            "state": state, "status": str(status), "version": version}


def record_fault(recorder: Recorder, error: ExecutionError, trigger: Trigger | None, transition: str | None, *,
                 step: int) -> None:
    """`step`: the first sequence of the step that faulted (what its `http` calls' idempotency keys name), which a
    recovery's retry of it keeps."""
    recorder.record(EventType.FAULTED, {
        "where": error.where, "errorType": error.error_type, "message": error.message,
        "trigger": trigger.to_dict() if trigger else None, "transition": transition, "step": step,
    })


def record_all(recorder: Recorder, type_: EventType, items: Iterable[Mapping[str, Any]]) -> None:
    for data in items:
        recorder.record(type_, data)


def decided(instance: Instance, recorder: Recorder, outcome: Outcome, reason: str | None = None) -> Decision:
    """The decision of the events recorded: the instance after them folded from `instance`."""
    after = fold(instance, recorder.events)
    assert after is not None
    return Decision(outcome, tuple(recorder.events), after, reason)
