"""Folding: an instance is the fold of its events. `apply` is the only way instance state ever changes; the
instance after a decision is always `fold(previous, events)`, never built apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.domain.events import Event, EventType
from engine.domain.instance import Fault, Instance, Status
from engine.domain.timers import PendingTimer

__all__ = ["apply", "fold"]


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
