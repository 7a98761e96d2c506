"""How the CLI shows instances and histories: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()

STATUS_STYLE = {"Waiting": "cyan", "Complete": "green", "Faulted": "bold red", "Terminated": "dim"}
TYPE_STYLE = {"Created": "cyan", "TransitionApplied": "green", "TriggerIgnored": "yellow",
              "TriggerRejected": "magenta", "Completed": "bold green", "Faulted": "bold red",
              "Recovered": "bold cyan", "Terminated": "dim"}


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value, ensure_ascii=False))


def instance_panel(instance: Mapping[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    status = str(instance.get("status"))
    table.add_row("id", str(instance["id"]))
    table.add_row("workflow", f"{instance['workflowId']} v{instance['workflowVersion']}")
    table.add_row("state", str(instance["state"]))
    table.add_row("status", f"[{STATUS_STYLE.get(status, '')}]{status}[/]")
    table.add_row("version", str(instance["version"]))
    table.add_row("interests", ", ".join(instance.get("interests") or []) or "-")
    table.add_row("context", json.dumps(instance.get("context") or {}, ensure_ascii=False))
    fault = instance.get("fault")
    if fault:
        table.add_row("fault", f"[bold red]{fault['errorType']}[/] at {fault['where']} (event {fault['sequence']}, "
                                f"trigger {fault.get('triggerId')}): {fault['message']}")
    console.print(table)


def instances_table(instances: Iterable[Mapping[str, Any]]) -> None:
    table = Table("id", "workflow", "state", "status", "version", "updated", "fault")
    for item in instances:
        status = str(item.get("status"))
        fault = item.get("fault") or {}
        table.add_row(str(item["id"]), f"{item['workflowId']} v{item['workflowVersion']}", str(item["state"]),
                      f"[{STATUS_STYLE.get(status, '')}]{status}[/]", str(item["version"]),
                      str(item.get("updatedAt", "")), f"{fault.get('errorType', '')} {fault.get('where', '')}".strip())
    console.print(table)


def describe(event: Mapping[str, Any]) -> str:
    """One line that says what an event did."""
    data = event.get("data") or {}
    kind = event["type"]
    if kind == "Created":
        return f"created in [bold]{data.get('state')}[/] ({data.get('workflowId')} v{data.get('workflowVersion')})"
    if kind == "TransitionApplied":
        changes = _changes(data.get("contextChanges"))
        return (f"[bold]{data.get('topic')}[/]: {data.get('from')} → [bold]{data.get('to')}[/] "
                f"via {data.get('transition')}{changes}")
    if kind in ("TriggerIgnored", "TriggerRejected"):
        verb = "ignored" if kind == "TriggerIgnored" else "rejected"
        return f"[bold]{data.get('topic')}[/] {verb}: {data.get('reason')}"
    if kind == "Completed":
        return f"completed in {data.get('state')}"
    if kind == "Faulted":
        trigger = data.get("trigger") or {}
        topic = f" on [bold]{trigger.get('topic')}[/]" if trigger else ""
        return f"faulted{topic}: {data.get('errorType')} at {data.get('where')}: {data.get('message')}"
    if kind == "Recovered":
        return f"recovered ({data.get('mode')}) by {data.get('by')} to {data.get('state')}: {data.get('reason')}"
    if kind == "Terminated":
        return f"terminated by {data.get('by')}: {data.get('reason')}"
    return json.dumps(data, ensure_ascii=False)


def _changes(changes: Mapping[str, Any] | None) -> str:
    if not changes:
        return ""
    parts = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (changes.get("set") or {}).items()]
    parts += [f"-{k}" for k in changes.get("removed") or []]
    return f"; context {', '.join(parts)}" if parts else ""


def history_table(events: Iterable[Mapping[str, Any]]) -> None:
    table = Table("#", "at", "type", "trigger", "what happened")
    for event in events:
        kind = str(event["type"])
        table.add_row(str(event["sequence"]), str(event["at"]), f"[{TYPE_STYLE.get(kind, '')}]{kind}[/]",
                      str(event.get("triggerId") or "-"), describe(event))
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
