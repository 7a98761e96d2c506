"""Time and change from the command line: scheduled triggers (list, cancel) and moving instances to another version
of their workflow (one, or all a filter matches, a dry run first). Remote, like every server command."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from engine.cli import render
from engine.cli.operations import By, DryRun, OperationId, Reason, Yes, _ask
from engine.cli.remote import DEFAULT_URL, AsJson, Key, Remote, Tenant, Url, fail, json_option

ToVersion = Annotated[int, typer.Option("--to-version", min=1, help="The version to move to.")]
StateMap = Annotated[list[str] | None, typer.Option("--map", help="OLD=NEW: a state of its version → the target's "
                                                                  "(repeatable; a state not named keeps its id).")]
Patch = Annotated[str | None, typer.Option("--context", help="JSON object merged into the context (null removes a "
                                                             "key).")]


def _state_map(pairs: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            fail(f"--map {pair!r}: write OLD=NEW", 2)
        mapping[old] = new
    return mapping


def _migration_body(to_version: int, state_map: list[str] | None, context: str | None, reason: str, by: str | None,
                    operation_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"toVersion": to_version, "stateMap": _state_map(state_map), "reason": reason}
    patch = json_option(context, "--context")
    for name, value in (("contextPatch", patch), ("by", by), ("id", operation_id)):
        if value is not None:
            body[name] = value
    return body


def _result_line(item: dict[str, Any]) -> None:
    outcome = str(item.get("outcome"))
    line = f"{item.get('instanceId') or (item.get('instance') or {}).get('id')}: {outcome}"
    if outcome == "refused":
        line += ": " + "; ".join(f"{p['path']}: {p['message']}" for p in item.get("problems") or []) \
                if item.get("problems") else f": {item.get('detail')}"
    render.console.print(line, highlight=False, markup=False, soft_wrap=True)


def instances_migrate(instance_id: str, to_version: ToVersion, reason: Reason, state_map: StateMap = None,
                      context: Patch = None, by: By = None, operation_id: OperationId = None,
                      dry_run: DryRun = False, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False) -> None:
    """Move an instance to another version of its workflow (`Migrated`); --dry-run says what would happen.

    Exit status 1 when the target version refuses it (every problem is listed)."""
    body = _migration_body(to_version, state_map, context, reason, by, operation_id)
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("instances", instance_id, "migrate"),
                             json={**body, "dryRun": dry_run}).json()
    if as_json:
        render.print_json(result)
    elif dry_run:
        _result_line(result)
        if result.get("instance"):
            render.instance_panel(result["instance"])
    else:
        render.outcome_line(result)
        render.instance_panel(result["instance"])
    if result.get("outcome") == "refused":
        raise typer.Exit(1)


def instances_migrate_all(workflow: str, to_version: ToVersion, reason: Reason,
                          from_version: Annotated[int | None, typer.Option("--from-version", min=1,
                                                                           help="Only instances on this version.")]
                          = None,
                          in_state: Annotated[str | None, typer.Option("--in-state", help="Only instances in this "
                                                                                          "state.")] = None,
                          status: Annotated[str | None, typer.Option("--status", help="Only this status (default: "
                                                                                      "Waiting and Faulted).")] = None,
                          state_map: StateMap = None, context: Patch = None, by: By = None,
                          limit: Annotated[int, typer.Option(min=1, max=1000)] = 1000, dry_run: DryRun = False,
                          yes: Yes = False, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                          as_json: AsJson = False) -> None:
    """Move every instance of a workflow that a filter matches to another version; a dry run first, then asks."""
    body = _migration_body(to_version, state_map, context, reason, by, None)
    found = {"workflowId": workflow, "version": from_version, "state": in_state, "status": status}
    body |= {"filter": {name: value for name, value in found.items() if value is not None}, "limit": limit}
    with Remote(url, key, tenant) as remote:
        preview = remote.call("POST", remote.path("migrations"), json={**body, "dryRun": True}).json()
        movable = [r["instanceId"] for r in preview["results"] if r["outcome"] == "would-migrate"]
        if dry_run or not movable:
            if as_json:
                render.print_json(preview)
            else:
                render.console.print(f"{len(movable)} of {len(preview['matched'])} instance(s) could move to "
                                     f"v{to_version}", highlight=False)
                for item in preview["results"]:
                    _result_line(item)
            return
        if not yes:
            render.console.print(f"{len(movable)} instance(s) would move to v{to_version}: {', '.join(movable)}",
                                 highlight=False, soft_wrap=True)
            _ask(f"Migrate {len(movable)} instance{'' if len(movable) == 1 else 's'}?")
        report = remote.call("POST", remote.path("migrations"), json=body).json()
    if as_json:
        render.print_json(report)
        return
    for item in report["results"]:
        _result_line(item)


def instances_scheduled(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                        as_json: AsJson = False) -> None:
    """The instance's pending timers: scheduled triggers and its state's timeouts, earliest first."""
    with Remote(url, key, tenant) as remote:
        items = remote.call("GET", remote.path("instances", instance_id, "scheduled")).json()["items"]
    if as_json:
        render.print_json({"items": items})
        return
    table = Table("due", "kind", "id", "sends", "firing")
    for item in items:
        trigger = item.get("trigger") or {}
        table.add_row(escape(item["dueAt"]), item["kind"], escape(item["timerId"]),
                      escape(f"{trigger.get('topic')} ({trigger.get('id')})"), str(item.get("n")))
    render.console.print(table)


def instances_cancel(instance_id: str, trigger_id: str, reason: Annotated[str | None, typer.Option(
                         "--reason", help="Why (recorded in the event).")] = None,
                     url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo") -> None:
    """Cancel a scheduled trigger before it is due."""
    with Remote(url, key, tenant) as remote:
        remote.call("DELETE", remote.path("instances", instance_id, "scheduled", trigger_id),
                    params={"reason": reason} if reason else None, ok=(204,))
    render.console.print(f"cancelled: {trigger_id}", highlight=False, markup=False)


def register(instances_app: typer.Typer) -> None:
    instances_app.command("migrate")(instances_migrate)
    instances_app.command("migrate-all")(instances_migrate_all)
    instances_app.command("scheduled")(instances_scheduled)
    instances_app.command("cancel")(instances_cancel)
