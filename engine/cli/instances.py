"""`waymark instances create/list/show/history`: instances on a server (`show` and `history` read a local data
directory instead when `--data-dir` is given)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import render
from engine.cli.remote import (
    DEFAULT_URL,
    EXIT_CODES,
    NOT_READY,
    AsJson,
    Key,
    LocalDir,
    Remote,
    Tenant,
    Url,
    Wait,
    fail,
    json_option,
    show_result,
)

__all__ = ["register"]


def instances_create(workflow: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                     as_json: AsJson = False,
                     instance_id: Annotated[str | None, typer.Option("--id", help="Instance id (default: "
                                                                                  "generated).")] = None,
                     context: Annotated[str | None, typer.Option(help="Initial context (JSON object).")] = None,
                     interest: Annotated[list[str] | None, typer.Option(help="A subject it listens to "
                                                                             "(repeatable).")] = None,
                     trigger_id: Annotated[str | None, typer.Option("--trigger-id", help="Idempotency key.")] = None,
                     wait: Wait = 0) -> None:
    """Create an instance of a workflow (queued; --wait N to see it created).

    Exit status: 0 created (or accepted, without --wait), 5 it faulted, 6 not processed within --wait (still
    queued); 1 an error answer, 2 no server."""
    body: dict[str, Any] = {"workflowId": workflow}
    if instance_id is not None:
        body["id"] = instance_id
    if context is not None:
        body["context"] = json_option(context, "--context")
    if interest:
        body["interests"] = interest
    if trigger_id is not None:
        body["triggerId"] = trigger_id
    with Remote(url, key, tenant) as remote:
        response = remote.call("POST", remote.path("instances"), json=body, ok=(201, 202), wait=wait)
    result = response.json()
    if as_json:
        render.print_json(result)
    elif response.status_code == 201:
        render.instance_panel(result)
    else:
        render.console.print(f"accepted: instance [bold]{result['instanceId']}[/] (trigger {result['triggerId']})"
                             + (f"; not processed within {wait:g} s" if wait else ""), highlight=False)
    if response.status_code == 201 and result.get("status") == "Faulted":
        raise typer.Exit(EXIT_CODES["faulted"])
    if response.status_code == 202 and wait:
        raise typer.Exit(NOT_READY)


def instances_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                   status: Annotated[str | None, typer.Option(help="Waiting, Complete, Faulted, Terminated.")] = None,
                   workflow: Annotated[str | None, typer.Option(help="Workflow id.")] = None,
                   state: Annotated[str | None, typer.Option(help="Current state.")] = None,
                   limit: Annotated[int, typer.Option(min=1, max=1000, help="Page size.")] = 100,
                   continuation: Annotated[str | None, typer.Option(help="Token of the next page.")] = None,
                   every: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False) -> None:
    """Instances matching every filter, by id, a page at a time (--all for every page)."""
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("status", status), ("workflowId", workflow), ("state", state),
                        ("continuation", continuation)):
        if value is not None:
            params[name] = value
    with Remote(url, key, tenant) as remote:
        items, next_page = remote.pages(remote.path("instances"), params, every=every)
    if as_json:
        render.print_json({"items": items, "continuation": next_page})
        return
    render.instances_table(items)
    if next_page:
        render.console.print(f"more: --continuation {next_page}", highlight=False)


def instances_show(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                   as_json: AsJson = False, data_dir: LocalDir = None) -> None:
    """Show one instance: state, status, context and fault."""
    if data_dir is not None:
        from engine.domain import NotFound

        try:
            instance = _local_engine(data_dir).events.load(tenant, instance_id).to_dict()
        except NotFound as e:
            fail(str(e), 1)
    else:
        with Remote(url, key, tenant) as remote:
            instance = remote.call("GET", remote.path("instances", instance_id)).json()
    show_result(instance, as_json, render.instance_panel)


def instances_history(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False, data_dir: LocalDir = None,
                      wide: Annotated[bool, typer.Option("--wide", help="Every value whole (long ids, times to the "
                                                                        "microsecond), wrapped; by default a row "
                                                                        "is one line, cut to the terminal.")]
                      = False) -> None:
    """The instance's events, in order: every trigger and what it did."""
    if data_dir is not None:
        events = [e.to_dict() for e in _local_engine(data_dir).events.read(tenant, instance_id)]
        if not events:
            fail(f"instance {instance_id!r} does not exist in tenant {tenant!r}", 1)
    else:
        with Remote(url, key, tenant) as remote:
            events = remote.pages(remote.path("instances", instance_id, "events"), {"limit": 1000})[0]
    show_result({"items": events}, as_json, lambda value: render.history_table(value["items"], wide=wide))


def _local_engine(data_dir: Path) -> Any:
    from engine.hosting.runtime import sqlite_engine

    if not data_dir.is_dir():
        fail(f"no data directory at {data_dir}", 2)
    return sqlite_engine(data_dir)


def register(instances_app: typer.Typer) -> None:
    """Add the remote commands to the `instances` group."""
    instances_app.command("create")(instances_create)
    instances_app.command("list")(instances_list)
    instances_app.command("show")(instances_show)
    instances_app.command("history")(instances_history)
