"""Stored events: the change log of an instance (engine/domain/commit.py groups those of one command)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    CREATED = "Created"
    TRANSITION_APPLIED = "TransitionApplied"
    TRIGGER_IGNORED = "TriggerIgnored"
    TRIGGER_REJECTED = "TriggerRejected"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    RECOVERED = "Recovered"
    TERMINATED = "Terminated"
    TIMER_SCHEDULED = "TimerScheduled"
    TIMER_FIRED = "TimerFired"
    TIMER_CANCELLED = "TimerCancelled"
    MIGRATED = "Migrated"


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event. `sequence` runs 1, 2, 3 … per instance with no gaps."""

    instance_id: str
    sequence: int
    type: EventType
    at: str
    trigger_id: str | None
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "sequence": self.sequence,
            "type": str(self.type),
            "at": self.at,
            "triggerId": self.trigger_id,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Event:
        return cls(
            instance_id=doc["instanceId"],
            sequence=int(doc["sequence"]),
            type=EventType(doc["type"]),
            at=doc["at"],
            trigger_id=doc.get("triggerId"),
            data=doc.get("data") or {},
        )


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the one time format of stored events."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
