"""Commands as they travel on the queue: plain JSON bodies, built and read here only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.domain import Trigger

CommandKind = Literal["create", "trigger", "broadcast", "timer"]


@dataclass(frozen=True)
class CreateInstance:
    tenant: str
    instance_id: str
    workflow_id: str
    trigger_id: str
    context: Mapping[str, Any] = field(default_factory=dict)
    interests: tuple[str, ...] = ()
    workflow_version: int | None = None  # None: the latest at processing time


@dataclass(frozen=True)
class SendTrigger:
    tenant: str
    instance_id: str
    trigger: Trigger


@dataclass(frozen=True)
class Broadcast:
    tenant: str
    trigger: Trigger


@dataclass(frozen=True)
class FireTimer:
    """A timer's firing, delivered by the queue when due: which pending timer of which visit, and its number. What
    it sends is read from the instance's own record of the timer, not from the message."""

    tenant: str
    instance_id: str
    timer_id: str
    entry_sequence: int | None  # None: a scheduled trigger (it belongs to no visit)
    n: int
    trigger_id: str
    due_at: str


Command = CreateInstance | SendTrigger | Broadcast | FireTimer


def _trigger_doc(trigger: Trigger) -> dict[str, Any]:
    doc = {"id": trigger.id, "topic": trigger.topic, "content": trigger.content, "subjects": list(trigger.subjects)}
    if trigger.expected_version is not None:
        doc["expectedVersion"] = trigger.expected_version
    return doc


def _trigger(doc: Mapping[str, Any]) -> Trigger:
    subjects: Sequence[str] = doc.get("subjects") or ()
    expected = doc.get("expectedVersion")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 0):
        raise MalformedCommand(f"expectedVersion must be a version number, not {expected!r}")
    return Trigger(topic=doc["topic"], id=doc["id"], content=doc.get("content"), subjects=tuple(subjects),
                   expected_version=expected)


def to_message(command: Command) -> dict[str, Any]:
    match command:
        case CreateInstance():
            return {"kind": "create", "tenant": command.tenant, "instanceId": command.instance_id,
                    "workflowId": command.workflow_id, "workflowVersion": command.workflow_version,
                    "triggerId": command.trigger_id, "context": dict(command.context),
                    "interests": list(command.interests)}
        case SendTrigger():
            return {"kind": "trigger", "tenant": command.tenant, "instanceId": command.instance_id,
                    "trigger": _trigger_doc(command.trigger)}
        case Broadcast():
            return {"kind": "broadcast", "tenant": command.tenant, "trigger": _trigger_doc(command.trigger)}
        case FireTimer():
            return {"kind": "timer", "tenant": command.tenant, "instanceId": command.instance_id,
                    "timerId": command.timer_id, "entrySequence": command.entry_sequence, "n": command.n,
                    "triggerId": command.trigger_id, "dueAt": command.due_at}


class MalformedCommand(ValueError):
    pass


def from_message(body: Mapping[str, Any]) -> Command:
    try:
        match body["kind"]:
            case "create":
                return CreateInstance(tenant=body["tenant"], instance_id=body["instanceId"],
                                      workflow_id=body["workflowId"], trigger_id=body["triggerId"],
                                      context=body.get("context") or {}, interests=tuple(body.get("interests") or ()),
                                      workflow_version=body.get("workflowVersion"))
            case "trigger":
                return SendTrigger(tenant=body["tenant"], instance_id=body["instanceId"],
                                   trigger=_trigger(body["trigger"]))
            case "broadcast":
                return Broadcast(tenant=body["tenant"], trigger=_trigger(body["trigger"]))
            case "timer":
                entry = body.get("entrySequence")
                return FireTimer(tenant=body["tenant"], instance_id=body["instanceId"], timer_id=body["timerId"],
                                 entry_sequence=int(entry) if entry is not None else None, n=int(body["n"]),
                                 trigger_id=body["triggerId"], due_at=body["dueAt"])
            case other:
                raise MalformedCommand(f"unknown command kind {other!r}")
    except MalformedCommand:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise MalformedCommand(f"command message is missing or has a wrong field: {e}") from e
