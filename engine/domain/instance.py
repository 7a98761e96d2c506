"""The workflow instance: what it is (its state, status, context, interests, pending timers, fault), and the trigger
it is sent. Values only: fold.py builds an instance from its events, and the `decide_*` functions (creation.py,
triggering.py, recovery.py, migration.py, scheduling.py) say what a command does to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.domain.timers import PendingTimer

__all__ = ["Fault", "Instance", "Status", "Trigger"]


class Status(StrEnum):
    WAITING = "Waiting"
    COMPLETE = "Complete"
    FAULTED = "Faulted"
    TERMINATED = "Terminated"


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
