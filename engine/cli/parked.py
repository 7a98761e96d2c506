"""`waymark commands parked …`: a tenant's parked commands, through the API (its key or the admin key).

The parked commands live in the tenant's own store (engine/stores/parked.py); the CLI reaches them through the
deployed app's API like every other tenant command, so it needs no storage credential at all.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from engine.cli import render
from engine.cli.help import Cli
from engine.cli.remote import DEFAULT_URL, AsJson, Key, Remote, Tenant, Url, fail

__all__ = ["register"]

Instance = Annotated[str | None, typer.Option("--instance", help="Only this instance's.")]
Reason = Annotated[str | None, typer.Option("--reason", help="malformed, instance-exists, failed, hold-expired or "
                                                             "poisoned.")]
Since = Annotated[str | None, typer.Option("--since", help="Parked at or after (RFC 3339, e.g. 2026-03-01T00:00Z).")]
Until = Annotated[str | None, typer.Option("--until", help="Parked before (RFC 3339).")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List what would be done; do nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Everything = Annotated[bool, typer.Option("--all-parked", help="Every parked command (when no filter is given).")]


def _filter(instance: str | None, reason: str | None, since: str | None, until: str | None) -> dict[str, str]:
    given = {"instanceId": instance, "reason": reason, "since": since, "until": until}
    return {name: value for name, value in given.items() if value is not None}


def _table(items: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("id", "instance", "kind", "trigger", "reason", "deliveries", "parked at", "detail")
    for item in items:
        table.add_row(*(escape(str(item.get(key) if item.get(key) is not None else "-")) for key in (
            "id", "instanceId", "kind", "triggerId", "reason", "deliveryCount", "parkedAt", "detail")))
    render.console.print(table)


def parked_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                instance: Instance = None, reason: Reason = None, since: Since = None, until: Until = None,
                limit: Limit = 100,
                continuation: Annotated[str | None, typer.Option("--continuation",
                                                                 help="From a previous page.")] = None,
                every: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False) -> None:
    """Commands that could not be processed, kept in the tenant's store (in the order they were parked)."""
    params: dict[str, Any] = {**_filter(instance, reason, since, until), "limit": limit}
    if continuation is not None:
        params["continuation"] = continuation
    with Remote(url, key, tenant) as remote:
        items, following = remote.pages(remote.path("parked"), params, every=every)
    if as_json:
        render.print_json({"items": items, "continuation": following})
        return
    _table(items)
    if following is not None:
        render.console.print(f"more: --continuation '{following}' (or --all)", highlight=False, markup=False)


def parked_show(parked_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                as_json: AsJson = False) -> None:
    """One parked command, with its body."""
    with Remote(url, key, tenant) as remote:
        item = remote.call("GET", remote.path("parked", parked_id)).json()
    if as_json:
        render.print_json(item)
        return
    _table([item])
    render.print_json(item["body"])


def _act(action: str, parked_id: str | None, url: str, key: str | None, tenant: str, as_json: bool,
         wanted: dict[str, str], every: bool, limit: int, dry_run: bool, yes: bool) -> None:
    report: dict[str, Any]
    with Remote(url, key, tenant) as remote:
        if parked_id is not None:
            if wanted or every:
                fail("give a parked command's id, or a filter, not both", 2)
            if action == "requeue":
                result = remote.call("POST", remote.path("parked", parked_id, "requeue")).json()
            else:
                if not yes:
                    typer.confirm(f"Discard {parked_id} for good?", abort=True)
                remote.call("DELETE", remote.path("parked", parked_id), ok=(204,))
                result = {"id": parked_id, "outcome": "discarded"}
            report = {"dryRun": False, "results": [result]}
        else:
            if not wanted and not every:
                fail("give a filter (--instance, --reason, --since, --until) or --all-parked", 2)
            body = {"filter": wanted, "all": every, "limit": limit}
            preview = remote.call("POST", remote.path("parked", action), json={**body, "dryRun": True}).json()
            if dry_run or not preview["matched"]:
                report = preview
            else:
                if not as_json:
                    _table(preview["matched"])
                if not yes:
                    typer.confirm(f"{action.capitalize()} these {len(preview['matched'])} parked command(s)?",
                                  abort=True)
                report = remote.call("POST", remote.path("parked", action), json=body).json()
    if as_json:
        render.print_json(report)
        return
    if report.get("dryRun"):
        _table(report["matched"])
        render.console.print(f"dry run: {len(report['matched'])} parked command(s) would be {action}d",
                             highlight=False)
        return
    for result in report["results"]:
        line = f"{result['id']}: {result['outcome']}"
        if result.get("detail"):
            line += f" ({result['detail']})"
        render.console.print(line, highlight=False, markup=False)
    failed = [r for r in report["results"] if r["outcome"] in ("failed", "not-attempted")]
    if failed:
        raise typer.Exit(1)


def parked_requeue(parked_id: Annotated[str | None, typer.Argument(help="One parked command's id.")] = None,
                   url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                   instance: Instance = None, reason: Reason = None, since: Since = None, until: Until = None,
                   every: Everything = False, limit: Limit = 100, dry_run: DryRun = False, yes: Yes = False) -> None:
    """Replay parked commands now, ahead of what is queued for their instances (one by id, or every match)."""
    _act("requeue", parked_id, url, key, tenant, as_json, _filter(instance, reason, since, until), every, limit,
         dry_run, yes)


def parked_discard(parked_id: Annotated[str | None, typer.Argument(help="One parked command's id.")] = None,
                   url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                   instance: Instance = None, reason: Reason = None, since: Since = None, until: Until = None,
                   every: Everything = False, limit: Limit = 100, dry_run: DryRun = False, yes: Yes = False) -> None:
    """Discard parked commands for good (one by id, or every match)."""
    _act("discard", parked_id, url, key, tenant, as_json, _filter(instance, reason, since, until), every, limit,
         dry_run, yes)


def register(commands_app: typer.Typer) -> None:
    parked_app = Cli(help="Commands that could not be processed, kept in the tenant's store: list, show, requeue "
                          "(replay), discard.")
    parked_app.command("list")(parked_list)
    parked_app.command("show")(parked_show)
    parked_app.command("requeue")(parked_requeue)
    parked_app.command("discard")(parked_discard)
    commands_app.add_typer(parked_app, name="parked")
