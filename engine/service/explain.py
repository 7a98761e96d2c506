"""Why an instance is where it is, in words, from its events (`waymark instances explain` and the dashboard)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

Event = Mapping[str, Any]


def explain(instance: Mapping[str, Any], events: Sequence[Event]) -> list[str]:
    """Sentences an operator reads at a glance: where it is, how it got there (the last transition, or the reset
    that moved it, whichever came last), a fault it was recovered from, what was refused, the fault it is in."""
    status, state = instance["status"], instance["state"]
    lines = [f"{instance['id']} is {status} in state {state!r} (workflow {instance['workflowId']} "
             f"v{instance['workflowVersion']}, {instance['version']} event(s))."]
    lines.append(_how_it_got_there(events))
    recovered = _last(events, "Recovered")
    if recovered is not None:
        lines.append(_recovery(recovered, events, faulted_now=status == "Faulted"))
    migrated = _last(events, "Migrated")
    if migrated is not None:
        data = migrated["data"]
        lines.append(f"It was migrated from v{data.get('fromVersion')} to v{data.get('toVersion')} by "
                     f"{data.get('by')} at {migrated['at']}, event {migrated['sequence']}: {data.get('reason')}.")
    ignored = _last(events, "TriggerIgnored")
    if ignored is not None:
        data = ignored["data"]
        lines.append(f"The last ignored trigger was {data.get('topic')!r} (id {ignored.get('triggerId')}) at "
                     f"{ignored['at']}: {data.get('reason')}.")
    rejected = _last(events, "TriggerRejected")
    if rejected is not None:
        lines.append(f"The last rejected trigger was {rejected['data'].get('topic')!r} at {rejected['at']}: "
                     f"{rejected['data'].get('reason')}.")
    fault = instance.get("fault")
    if status == "Faulted" and fault:
        lines += _faulted(instance, fault, events)
    elif status == "Terminated":
        terminated = _last(events, "Terminated")
        if terminated is not None:
            lines.append(f"It was terminated by {terminated['data'].get('by')} at {terminated['at']}: "
                         f"{terminated['data'].get('reason')}. It accepts no trigger.")
    elif status == "Complete":
        lines.append(f"State {state!r} has no transitions, so the instance is complete and accepts no trigger.")
    else:
        lines.append("It is waiting for a trigger.")
        for timer in sorted(instance.get("timers") or [], key=lambda t: str(t.get("dueAt"))):
            trigger = timer.get("trigger") or {}
            what = "Scheduled trigger" if timer.get("kind") == "trigger" else "Timer"
            lines.append(f"{what} {timer.get('timerId')!r} sends {trigger.get('topic')!r} at {timer.get('dueAt')}.")
    return lines


def _how_it_got_there(events: Sequence[Event]) -> str:
    """The last event that set its state: a transition, or a recovery that reset it."""
    moved = next((e for e in reversed(events) if e["type"] == "TransitionApplied"
                  or (e["type"] == "Recovered" and e["data"].get("mode") == "reset")), None)
    if moved is None:
        return "No transition was ever applied: it is still in the state it was created in."
    data = moved["data"]
    if moved["type"] == "Recovered":
        return (f"It got there by a reset to {data.get('state')!r} (a recovery) by {data.get('by')} at "
                f"{moved['at']}, event {moved['sequence']}.")
    return (f"It got there by transition {data.get('transition')!r} from {data.get('from')!r} on trigger "
            f"{data.get('topic')!r} (id {moved.get('triggerId')}) at {moved['at']}, event {moved['sequence']}.")


def _recovery(recovered: Event, events: Sequence[Event], *, faulted_now: bool) -> str:
    """The last recovery, and the fault it was the answer to (in the past: the instance is not in it any more,
    unless it faulted again since)."""
    data = recovered["data"]
    before = next((e for e in reversed(events) if e["type"] == "Faulted" and e["sequence"] < recovered["sequence"]),
                  None)
    had = ""
    if before is not None:
        fault = before["data"]
        had = (f"It had faulted at {before['at']} (event {before['sequence']}: {fault.get('errorType')}); ")
    again = " It faulted again after that (below)." if faulted_now else ""
    said = f"{had}it was recovered" if had else "It was recovered"
    return (f"{said} ({data.get('mode')}) by {data.get('by')} at {recovered['at']}, event "
            f"{recovered['sequence']}: {data.get('reason')}.{again}")


def _faulted(instance: Mapping[str, Any], fault: Mapping[str, Any], events: Sequence[Event]) -> list[str]:
    faulted = next((e for e in events if e["sequence"] == fault["sequence"]), None)
    trigger = (faulted or {}).get("data", {}).get("trigger") if faulted else None
    cause = (f"on trigger {trigger['topic']!r} (id {trigger['id']}, content "
             f"{json.dumps(trigger.get('content'), ensure_ascii=False)})" if trigger else "at creation")
    quoted = shlex.quote(str(instance["id"]))
    return [f"It FAULTED {cause} at {fault['at']}, event {fault['sequence']}: {fault['errorType']} at "
            f"{fault['where']}: {fault['message']}",
            "It accepts no trigger until it is recovered. Fix the cause, then:",
            f"  waymark instances recover {quoted} --mode retry --reason '…'   (re-run that trigger)",
            f"  waymark instances recover {quoted} --mode reset --state STATE --reason '…'",
            f"  waymark instances terminate {quoted} --reason '…'   (end it for good)"]


def _last(events: Sequence[Event], kind: str) -> Event | None:
    return next((event for event in reversed(events) if event["type"] == kind), None)
