"""Stored events: the change log of an instance, and the commit that groups them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.domain.instance import Instance


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


@dataclass(frozen=True, slots=True)
class Commit:
    """The events one command produced, written atomically, with the instance as it is after them.

    `position` is the commit's place in its tenant's feed, assigned by the store (None before).
    """

    instance_id: str
    events: tuple[Event, ...]
    state: Instance
    position: int | None = None
    dispatched: bool = False

    @property
    def first_sequence(self) -> int:
        return self.events[0].sequence

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence

    @property
    def trigger_id(self) -> str | None:
        return self.events[0].trigger_id


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the one time format of stored events."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
