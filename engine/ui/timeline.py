"""An instance's history as the dashboard shows it: one entry per event, in plain text (the template escapes it).

The wording follows `engine.cli.render.describe`, which says the same thing for a terminal in Rich markup; here
the parts are kept apart (a headline, then labelled details and JSON blocks) so that HTML can lay them out, and
no user text is ever parsed as markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain import Event

__all__ = ["Entry", "entries", "pretty_json"]

# CSS class of each event type: the colour of its marker on the timeline.
KINDS = {"Created": "created", "TransitionApplied": "applied", "TriggerIgnored": "ignored",
         "TriggerRejected": "rejected", "Completed": "completed", "Faulted": "faulted", "Recovered": "recovered",
         "Terminated": "terminated", "TimerScheduled": "timer", "TimerFired": "timer", "TimerCancelled": "timer",
         "Migrated": "recovered"}


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class Entry:
    sequence: int
    type: str
    kind: str  # CSS class
    at: str
    trigger_id: str | None
    headline: str
    details: tuple[tuple[str, str], ...] = ()  # (label, text)
    blocks: tuple[tuple[str, str], ...] = field(default=())  # (label, pretty JSON)


def _changes(changes: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not changes:
        return []
    found = [("context set", f"{key} = {json.dumps(value, ensure_ascii=False, default=str)}")
             for key, value in sorted((changes.get("set") or {}).items())]
    found += [("context removed", str(key)) for key in changes.get("removed") or []]
    return found


def describe(event: Event) -> Entry:
    data: Mapping[str, Any] = event.data or {}
    kind = str(event.type)
    details: list[tuple[str, str]] = []
    blocks: list[tuple[str, str]] = []
    if kind == "Created":
        headline = f"Created in {data.get('state')} ({data.get('workflowId')} v{data.get('workflowVersion')})"
        if data.get("interests"):
            details.append(("interests", ", ".join(str(i) for i in data["interests"])))
        details += _changes(data.get("contextChanges"))
        blocks.append(("context", pretty_json(data.get("context") or {})))
    elif kind == "TransitionApplied":
        headline = (f"Trigger {data.get('topic')}: {data.get('from')} → {data.get('to')} "
                    f"(transition {data.get('transition')})")
        details += _changes(data.get("contextChanges"))
        if data.get("content") is not None:
            blocks.append(("trigger content", pretty_json(data.get("content"))))
    elif kind in ("TriggerIgnored", "TriggerRejected"):
        verb = "ignored" if kind == "TriggerIgnored" else "rejected"
        headline = f"Trigger {data.get('topic')} {verb}"
        details.append(("reason", str(data.get("reason"))))
    elif kind == "Completed":
        headline = f"Completed in {data.get('state')}"
    elif kind == "Faulted":
        trigger = data.get("trigger") or {}
        headline = f"Faulted on trigger {trigger.get('topic')}" if trigger else "Faulted at creation"
        details += [("error", str(data.get("errorType"))), ("where", str(data.get("where"))),
                    ("message", str(data.get("message")))]
        if data.get("transition"):
            details.append(("transition", str(data.get("transition"))))
        if trigger:
            blocks.append(("trigger content", pretty_json(trigger.get("content"))))
    elif kind == "Recovered":
        headline = f"Recovered ({data.get('mode')}) in {data.get('state')}"
        details += [("by", str(data.get("by"))), ("reason", str(data.get("reason")))]
        if data.get("toSequence") is not None:
            details.append(("as of event", str(data.get("toSequence"))))
        details += _changes(data.get("contextChanges"))
        blocks.append(("context", pretty_json(data.get("context") or {})))
    elif kind == "Terminated":
        headline = f"Terminated in {data.get('state')}"
        details += [("by", str(data.get("by"))), ("reason", str(data.get("reason")))]
    elif kind in _TIME_AND_CHANGE:
        headline, more = _TIME_AND_CHANGE[kind](data)
        details += more
    else:
        headline = kind
        blocks.append(("data", pretty_json(dict(data))))
    return Entry(event.sequence, kind, KINDS.get(kind, "other"), event.at, event.trigger_id, headline,
                 tuple(details), tuple(blocks))


def _timer_name(data: Mapping[str, Any]) -> str:
    if data.get("kind") == "trigger":
        return f"scheduled trigger {data.get('timerId')}"
    repeat = f" (firing {data.get('n')})" if (data.get("n") or 1) > 1 else ""
    return f"timer {data.get('timerId')}{repeat}"


def _scheduled(data: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    trigger = data.get("trigger") or {}
    details = [("due", str(data.get("dueAt"))), ("sends", f"{trigger.get('topic')} as trigger {trigger.get('id')}")]
    if data.get("repeat") is not None:
        limit = "while the visit lasts" if data["repeat"] == 0 else f"at most {data['repeat']} times"
        details.append(("repeats", limit))
    if data.get("by"):
        details.append(("by", str(data["by"])))
    return f"Scheduled {_timer_name(data)}", details


def _fired(data: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return f"Fired {_timer_name(data)}: trigger {data.get('topic')}", [("was due", str(data.get("dueAt")))]


def _cancelled(data: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    details = [("reason", str(data.get("reason"))), ("was due", str(data.get("dueAt")))]
    if data.get("by"):
        details.append(("by", str(data["by"])))
    return f"Cancelled {_timer_name(data)}", details


def _migrated(data: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    moved = f" ({data.get('from')} → {data.get('to')})" if data.get("from") != data.get("to") else ""
    details = [("by", str(data.get("by"))), ("reason", str(data.get("reason")))]
    return (f"Migrated from v{data.get('fromVersion')} to v{data.get('toVersion')}{moved}",
            details + _changes(data.get("contextChanges")))


_TIME_AND_CHANGE: dict[str, Callable[[Mapping[str, Any]], tuple[str, list[tuple[str, str]]]]] = {
    "TimerScheduled": _scheduled, "TimerFired": _fired, "TimerCancelled": _cancelled, "Migrated": _migrated}


def entries(events: Iterable[Event]) -> list[Entry]:
    return [describe(event) for event in events]
