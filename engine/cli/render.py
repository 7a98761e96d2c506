"""How the CLI shows instances and histories: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

console = Console()

STATUS_STYLE = {"Waiting": "cyan", "Complete": "green", "Faulted": "bold red", "Terminated": "dim"}
TYPE_STYLE = {"Created": "cyan", "TransitionApplied": "green", "TriggerIgnored": "yellow",
              "TriggerRejected": "magenta", "Completed": "bold green", "Faulted": "bold red",
              "Recovered": "bold cyan", "Terminated": "dim", "TimerScheduled": "blue", "TimerFired": "blue",
              "TimerCancelled": "dim blue", "Migrated": "bold cyan"}


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value, ensure_ascii=False))


def instance_panel(instance: Mapping[str, Any]) -> None:
    e = _escaped
    table = Table(show_header=False, box=None)
    status = str(instance.get("status"))
    table.add_row("id", e(instance["id"]))
    table.add_row("workflow", f"{e(instance['workflowId'])} v{e(instance['workflowVersion'])}")
    table.add_row("state", e(instance["state"]))
    table.add_row("status", f"[{STATUS_STYLE.get(status, '')}]{e(status)}[/]")
    table.add_row("version", e(instance["version"]))
    table.add_row("interests", e(", ".join(instance.get("interests") or []) or "-"))
    table.add_row("context", e(json.dumps(instance.get("context") or {}, ensure_ascii=False)))
    for timer in sorted(instance.get("timers") or [], key=lambda t: str(t.get("dueAt"))):
        what = "scheduled" if timer.get("kind") == "trigger" else "timer"
        table.add_row(what, f"{e(timer.get('timerId'))} → {e((timer.get('trigger') or {}).get('topic'))} at "
                            f"{e(timer.get('dueAt'))}")
    fault = instance.get("fault")
    if fault:
        table.add_row("fault", f"[bold red]{e(fault['errorType'])}[/] at {e(fault['where'])} (event "
                               f"{e(fault['sequence'])}, trigger {e(fault.get('triggerId'))}): {e(fault['message'])}")
    console.print(table)


def instances_table(instances: Iterable[Mapping[str, Any]]) -> None:
    e = _escaped
    table = Table("id", "workflow", "state", "status", "version", "updated", "fault")
    for item in instances:
        status = str(item.get("status"))
        fault = item.get("fault") or {}
        table.add_row(e(item["id"]), f"{e(item['workflowId'])} v{e(item['workflowVersion'])}", e(item["state"]),
                      f"[{STATUS_STYLE.get(status, '')}]{e(status)}[/]", e(item["version"]),
                      e(when(item.get("updatedAt", ""))),
                      e(f"{fault.get('errorType', '')} {fault.get('where', '')}".strip()))
    console.print(table)


def _escaped(value: Any) -> str:
    """A value from an instance or event, safe inside Rich markup."""
    return escape(str(value))


def describe(event: Mapping[str, Any]) -> str:
    """One line (Rich markup) that says what an event did. Every value from the event is escaped: a reason or a
    topic may hold `[`…`]`, which Rich would otherwise read as markup."""
    data = event.get("data") or {}
    kind = event["type"]

    def v(key: str, source: Mapping[str, Any] = data) -> str:
        return escape(str(source.get(key)))

    if kind == "Created":
        return f"created in [bold]{v('state')}[/] ({v('workflowId')} v{v('workflowVersion')})"
    if kind == "TransitionApplied":
        changes = escape(_changes(data.get("contextChanges")))
        return f"[bold]{v('topic')}[/]: {v('from')} → [bold]{v('to')}[/] via {v('transition')}{changes}"
    if kind in ("TriggerIgnored", "TriggerRejected"):
        verb = "ignored" if kind == "TriggerIgnored" else "rejected"
        return f"[bold]{v('topic')}[/] {verb}: {v('reason')}"
    if kind == "Completed":
        return f"completed in {v('state')}"
    if kind == "Faulted":
        trigger = data.get("trigger") or {}
        topic = f" on [bold]{v('topic', trigger)}[/]" if trigger else ""
        return f"faulted{topic}: {v('errorType')} at {v('where')}: {v('message')}"
    if kind == "Recovered":
        return f"recovered ({v('mode')}) by {v('by')} to {v('state')}: {v('reason')}"
    if kind == "Terminated":
        return f"terminated by {v('by')}: {v('reason')}"
    if kind in ("TimerScheduled", "TimerFired", "TimerCancelled"):
        what = "scheduled trigger" if data.get("kind") == "trigger" else "timer"
        name = f"{what} [bold]{v('timerId')}[/]" + (f" #{v('n')}" if (data.get("n") or 1) > 1 else "")
        if kind == "TimerScheduled":
            return f"{name} scheduled: sends {v('topic', data.get('trigger') or {})} at {v('dueAt')}"
        if kind == "TimerFired":
            return f"{name} fired (due {v('dueAt')})"
        return f"{name} cancelled: {v('reason')}"
    if kind == "Migrated":
        moved = f", {v('from')} → [bold]{v('to')}[/]" if data.get("from") != data.get("to") else ""
        return f"migrated v{v('fromVersion')} → v{v('toVersion')}{moved} by {v('by')}: {v('reason')}"
    return escape(json.dumps(data, ensure_ascii=False))


def _changes(changes: Mapping[str, Any] | None) -> str:
    if not changes:
        return ""
    parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (changes.get("set") or {}).items()]
    parts += [f"-{k}" for k in changes.get("removed") or []]
    return f"; context {', '.join(parts)}" if parts else ""


TRIGGER_WIDTH = 12  # a trigger id is cut to this in the history table (`--wide` shows it whole)


def when(at: object) -> str:
    """A stored time (ISO 8601, UTC, to the microsecond) to the second, as people read it: `2025-01-01 12:00:00`."""
    text = str(at or "")
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]}"
    return text


def history_table(events: Iterable[Mapping[str, Any]], *, wide: bool = False) -> None:
    """One line per event, cut (`…`) to the terminal's width, times to the second in UTC; `wide`: every value
    whole and the type of each event, times as stored, one line per event however wide (for `less -S`)."""
    if wide:
        table = Table("#", "at", "type", "trigger", "what happened", box=box.SIMPLE_HEAD, pad_edge=False)
        for event in events:
            kind = str(event["type"])
            table.add_row(str(event["sequence"]), _escaped(event["at"]),
                          f"[{TYPE_STYLE.get(kind, '')}]{_escaped(kind)}[/]", _escaped(event.get("triggerId") or "-"),
                          describe(event))
        natural = Measurement.get(console, console.options.update(max_width=1_000_000), table).maximum
        width = console.width
        console.width = max(width, natural)  # print(width=) cannot widen past the terminal
        try:
            console.print(table, crop=False)
        finally:
            console.width = width
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("trigger", no_wrap=True, max_width=TRIGGER_WIDTH, overflow="ellipsis")
    # The one column that gives up width when the terminal is narrow; its cells are one line, cut with `…`.
    table.add_column("what happened")
    for event in events:
        style = TYPE_STYLE.get(str(event["type"]), "")
        what = Text.from_markup(f"[{style}]{describe(event)}[/]" if style else describe(event), overflow="ellipsis")
        what.no_wrap = True
        table.add_row(str(event["sequence"]), when(event["at"]), _escaped(event.get("triggerId") or "-"), what)
    console.print(table)


OUTCOME_STYLE = {"applied": "green", "created": "green", "ignored": "yellow", "rejected": "magenta",
                 "faulted": "bold red", "recovered": "bold cyan", "terminated": "dim"}


def outcome_line(result: Mapping[str, Any]) -> None:
    """What a trigger did: `{"outcome", "instance"}` as the API answers it."""
    outcome = str(result.get("outcome"))
    instance = result.get("instance") or {}
    console.print(f"[{OUTCOME_STYLE.get(outcome, '')}]{outcome}[/]: {instance.get('id')} is in "
                  f"[bold]{instance.get('state')}[/] ({instance.get('status')}, version {instance.get('version')})",
                  highlight=False)
