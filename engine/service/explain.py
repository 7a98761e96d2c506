"""Why an instance is where it is, in words, from its events (`waymark instances explain` and the dashboard)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any


def explain(instance: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences an operator reads at a glance: where it is, how it got there, what was refused, the fault."""
    status, state = instance["status"], instance["state"]
    lines = [f"{instance['id']} is {status} in state {state!r} (workflow {instance['workflowId']} "
             f"v{instance['workflowVersion']}, {instance['version']} event(s))."]
    applied = _last(events, "TransitionApplied")
    if applied is not None:
        data = applied["data"]
        lines.append(f"It got there by transition {data.get('transition')!r} from {data.get('from')!r} on trigger "
                     f"{data.get('topic')!r} (id {applied.get('triggerId')}) at {applied['at']}, event "
                     f"{applied['sequence']}.")
    else:
        lines.append("No transition was ever applied: it is still in the state it was created in.")
    recovered = _last(events, "Recovered")
    if recovered is not None:
        data = recovered["data"]
        lines.append(f"It was recovered ({data.get('mode')}) by {data.get('by')} at {recovered['at']}, event "
                     f"{recovered['sequence']}: {data.get('reason')}.")
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
        faulted = next((e for e in events if e["sequence"] == fault["sequence"]), None)
        trigger = (faulted or {}).get("data", {}).get("trigger") if faulted else None
        cause = (f"on trigger {trigger['topic']!r} (id {trigger['id']}, content "
                 f"{json.dumps(trigger.get('content'), ensure_ascii=False)})" if trigger else "at creation")
        lines.append(f"It FAULTED {cause} at {fault['at']}, event {fault['sequence']}: {fault['errorType']} at "
                     f"{fault['where']}: {fault['message']}")
        lines.append("It accepts no trigger until it is recovered. Fix the cause, then:")
        quoted = shlex.quote(str(instance["id"]))
        lines.append(f"  waymark instances recover {quoted} --mode retry --reason '…'   (re-run that trigger)")
        lines.append(f"  waymark instances recover {quoted} --mode reset --state STATE --reason '…'")
        lines.append(f"  waymark instances terminate {quoted} --reason '…'   (end it for good)")
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


def _last(events: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((event for event in reversed(events) if event["type"] == kind), None)
