"""Operator commands: explain, recover and terminate instances (one or in bulk), poisoned commands,
subscriptions, the pull feed, and a standalone worker.

Remote by default (`--url`, `--key`, `--tenant`, like every server command). `instances explain` reads a data
directory with `--data-dir`; `commands poison` works on a local queue (`--data-dir`) or an Azure Storage queue
(`--queue-connection-string`, `--queue-name`) too, as a platform operator needs when the API itself is down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import render
from engine.cli.help import Cli
from engine.cli.parked import register as register_parked
from engine.cli.remote import DEFAULT_URL, AsJson, Key, LocalDir, Remote, Tenant, Url, fail, json_option
from engine.domain import StoreUnavailable
from engine.queues.base import CommandQueue
from engine.service.explain import explain

Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")]
By = Annotated[str | None, typer.Option("--by", envvar="WAYMARK_OPERATOR", help="Who, as recorded (the key's "
                                                                                  "principal is added).")]
OperationId = Annotated[str | None, typer.Option("--id", help="Idempotency key of the operation.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List what would change; change nothing.")]
Status = Annotated[str, typer.Option("--status", help="Waiting, Complete, Faulted or Terminated.")]
Workflow = Annotated[str | None, typer.Option("--workflow", help="Workflow id.")]
ErrorType = Annotated[str | None, typer.Option("--error-type", help="Faulted with this error type.")]
Mode = Annotated[str, typer.Option("--mode", help="retry: re-run the faulting trigger; reset: move it.")]
State = Annotated[str | None, typer.Option("--state", help="reset: the state to move to.")]
ToSequence = Annotated[int | None, typer.Option("--to-sequence", min=1, help="reset: as of this event.")]
Context = Annotated[str | None, typer.Option("--context", help="reset: JSON object merged into the context "
                                                               "(null removes a key).")]
Force = Annotated[bool, typer.Option("--force", help="Recover an instance that is not Faulted.")]


def _fetch(remote: Remote, instance_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    instance = remote.call("GET", remote.path("instances", instance_id)).json()
    events = remote.pages(remote.path("instances", instance_id, "events"), {"limit": 1000})[0]
    return instance, events


def instances_explain(instance_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False, data_dir: LocalDir = None) -> None:
    """Why the instance is where it is: its last transition, last ignored trigger, and fault."""
    if data_dir is not None:
        from engine.domain import NotFound
        from engine.hosting.runtime import sqlite_engine

        engine = sqlite_engine(data_dir)
        try:
            instance = engine.events.load(tenant, instance_id).to_dict()
        except NotFound as e:
            fail(str(e), 1)
        events = [e.to_dict() for e in engine.events.read(tenant, instance_id)]
    else:
        with Remote(url, key, tenant) as remote:
            instance, events = _fetch(remote, instance_id)
    lines = explain(instance, events)
    if as_json:
        render.print_json({"instance": instance, "explanation": lines})
        return
    for line in lines:
        render.console.print(line, highlight=False, markup=False, soft_wrap=True)


def _recovery_body(mode: str, reason: str, by: str | None, state: str | None, to_sequence: int | None,
                   context: str | None, force: bool, operation_id: str | None) -> dict[str, Any]:
    if mode not in ("retry", "reset"):
        fail("--mode is retry or reset", 2)
    body: dict[str, Any] = {"mode": mode, "reason": reason, "force": force}
    for name, value in (("by", by), ("state", state), ("toSequence", to_sequence), ("id", operation_id),
                        ("context", json_option(context, "--context"))):
        if value is not None:
            body[name] = value
    return body


def instances_recover(instance_id: str, reason: Reason, mode: Mode = "retry", state: State = None,
                      to_sequence: ToSequence = None, context: Context = None, force: Force = False, by: By = None,
                      operation_id: OperationId = None, url: Url = DEFAULT_URL, key: Key = None,
                      tenant: Tenant = "demo", as_json: AsJson = False) -> None:
    """Recover a faulted instance by appending events: retry its faulting trigger, or reset it."""
    body = _recovery_body(mode, reason, by, state, to_sequence, context, force, operation_id)
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("instances", instance_id, "recover"), json=body).json()
    _show_outcome(result, as_json)


def instances_terminate(instance_id: str, reason: Reason, by: By = None, operation_id: OperationId = None,
                        url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                        yes: Yes = False) -> None:
    """End an instance for good (status Terminated), with a reason."""
    if not yes and not as_json:
        _ask(f"Terminate {instance_id} for good?")
    body: dict[str, Any] = {"reason": reason}
    if by is not None:
        body["by"] = by
    if operation_id is not None:
        body["id"] = operation_id
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("instances", instance_id, "terminate"), json=body).json()
    _show_outcome(result, as_json)


def _show_outcome(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        render.print_json(result)
        return
    render.outcome_line(result)
    render.instance_panel(result["instance"])


def _ask(question: str) -> None:
    """Go on only when the operator answers yes. "No" ends the command with nothing done and exit 0: the operator
    chose it, nothing failed. No answer at all (no terminal, end of input) is exit 1: a script that meant to go
    on needs `--yes`."""
    try:
        agreed = typer.confirm(question)
    except typer.Abort:
        fail("No answer: nothing done (--yes runs it without asking).", 1)
    if not agreed:
        render.console.print("Nothing done.", highlight=False)
        raise typer.Exit(0)


def _batch(path: str, body: dict[str, Any], what: str, url: str, key: str | None, tenant: str, as_json: bool,
           dry_run: bool, yes: bool) -> None:
    with Remote(url, key, tenant) as remote:
        preview = remote.call("POST", remote.path(path), json={**body, "dryRun": True}).json()
        matched = preview["matched"]
        if dry_run or not matched:
            if as_json:
                render.print_json(preview)
            else:
                render.console.print(f"{len(matched)} instance(s) would be {what}: {', '.join(matched) or '-'}",
                                     highlight=False, soft_wrap=True)
            return
        if not yes:
            render.console.print(f"{len(matched)} instance(s) match: {', '.join(matched)}", highlight=False,
                                 soft_wrap=True)
            verb = {"recovered": "Recover", "terminated": "Terminate"}.get(what, what)
            _ask(f"{verb} {len(matched)} instance{'' if len(matched) == 1 else 's'}?")
        report = remote.call("POST", remote.path(path), json=body).json()
    if as_json:
        render.print_json(report)
        return
    for item in report["results"]:
        render.console.print(f"{item['instanceId']}: {item['outcome']}"
                             + (f" ({item['detail']})" if item.get("detail") else ""), highlight=False)


def _filter(status: str, workflow: str | None, error_type: str | None, state: str | None = None) -> dict[str, Any]:
    found = {"status": status, "workflowId": workflow, "errorType": error_type, "state": state}
    return {name: value for name, value in found.items() if value is not None}


def instances_recover_batch(reason: Reason, mode: Mode = "retry", status: Status = "Faulted",
                            workflow: Workflow = None, error_type: ErrorType = None,
                            in_state: Annotated[str | None, typer.Option("--in-state", help="Only instances in this "
                                                                                            "state.")] = None,
                            state: State = None, context: Context = None, force: Force = False, by: By = None,
                            limit: Annotated[int, typer.Option(min=1, max=1000)] = 1000, dry_run: DryRun = False,
                            yes: Yes = False, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                            as_json: AsJson = False) -> None:
    """Recover every instance matching a filter (like `temporal workflow reset-batch`); asks first."""
    body = {**_recovery_body(mode, reason, by, state, None, context, force, None),
            "filter": _filter(status, workflow, error_type, in_state), "limit": limit}
    _batch("recoveries", body, "recovered", url, key, tenant, as_json, dry_run, yes)


def instances_terminate_batch(reason: Reason, status: Status = "Faulted", workflow: Workflow = None,
                              error_type: ErrorType = None, by: By = None,
                              limit: Annotated[int, typer.Option(min=1, max=1000)] = 1000, dry_run: DryRun = False,
                              yes: Yes = False, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                              as_json: AsJson = False) -> None:
    """Terminate every instance matching a filter; asks first."""
    body: dict[str, Any] = {"reason": reason, "filter": _filter(status, workflow, error_type), "limit": limit}
    if by is not None:
        body["by"] = by
    _batch("terminations", body, "terminated", url, key, tenant, as_json, dry_run, yes)


# ---------------------------------------------------------------------------------------------- poison

QueueDir = Annotated[Path | None, typer.Option("--data-dir", help="A local data directory's queue (every tenant).")]
AzureQueue = Annotated[str | None, typer.Option("--queue-connection-string", envvar="WAYMARK_QUEUE",
                                                help="An Azure Storage queue (every tenant).")]
QueueName = Annotated[str, typer.Option("--queue-name", envvar="WAYMARK_QUEUE_NAME", help="Its queue name.")]
AccountUrl = Annotated[str | None, typer.Option(
    "--queue-account-url", envvar="WAYMARK_QUEUE__queueServiceUri",
    help="An Azure Storage queue service (https://ACCOUNT.queue.core.windows.net), reached with "
         "DefaultAzureCredential (az login, a managed identity…): no shared key.")]


@contextmanager
def _direct_queue(data_dir: Path | None, connection: str | None, name: str,
                  account_url: str | None = None) -> Iterator[CommandQueue | None]:
    queue: CommandQueue | None = None
    if data_dir is not None:
        from engine.queues.sqlite import SqliteCommandQueue

        if not (data_dir / "queue.db").exists():
            fail(f"no command queue in {data_dir}", 2)
        queue = SqliteCommandQueue(data_dir / "queue.db")
    elif account_url is not None:
        from azure.identity import DefaultAzureCredential

        from engine.queues.azure import AzureStorageCommandQueue

        credential = DefaultAzureCredential()
        queue = AzureStorageCommandQueue.from_account_url(account_url, name, credential)
    elif connection is not None:
        from engine.queues.azure import AzureStorageCommandQueue

        queue = AzureStorageCommandQueue.from_connection_string(connection, name)
    try:
        yield queue
    except StoreUnavailable as e:
        fail(f"{e} (with --queue-account-url, DefaultAzureCredential must find a credential: `az login`, a managed "
              "identity, or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET)" if account_url else str(e), 2)
    finally:
        if queue is not None:
            queue.close()


def poison_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
                data_dir: QueueDir = None, connection: AzureQueue = None, queue_name: QueueName = "commands",
                account_url: AccountUrl = None) -> None:
    """Commands the queue poisoned (those no tenant's parked store could take)."""
    with _direct_queue(data_dir, connection, queue_name, account_url) as queue:
        items: list[dict[str, Any]]
        if queue is not None:
            items = [{"id": m.id, "dequeueCount": m.dequeue_count, "kind": m.body.get("kind"),
                      "tenant": m.body.get("tenant"), "instanceId": m.body.get("instanceId"), "body": m.body}
                     for m in queue.poisoned(limit=1000)]
        else:
            with Remote(url, key, tenant) as remote:
                items = remote.call("GET", remote.path("commands", "poison")).json()["items"]
    if as_json:
        render.print_json({"items": items})
        return
    from rich.table import Table

    table = Table("id", "kind", "tenant", "instance", "trigger", "dequeued")
    for item in items:
        body: dict[str, Any] = item["body"]
        trigger = (body.get("trigger") or {}).get("id") or body.get("triggerId")
        table.add_row(str(item["id"]), str(item.get("kind")), str(item.get("tenant") or body.get("tenant")),
                      str(item.get("instanceId")), str(trigger), str(item["dequeueCount"]))
    render.console.print(table)


def poison_requeue(message_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                   data_dir: QueueDir = None, connection: AzureQueue = None,
                   queue_name: QueueName = "commands", account_url: AccountUrl = None) -> None:
    """Put a poisoned command back on the queue unchanged: its trigger id keeps it idempotent."""
    with _direct_queue(data_dir, connection, queue_name, account_url) as queue:
        if queue is not None:
            try:
                queue.requeue_poisoned(message_id)
            except KeyError:
                fail(f"no poisoned command {message_id!r}", 1)
        else:
            with Remote(url, key, tenant) as remote:
                remote.call("POST", remote.path("commands", "poison", message_id, "requeue"), ok=(202,))
    render.console.print(f"requeued {message_id}", highlight=False)


def poison_discard(message_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                   data_dir: QueueDir = None, connection: AzureQueue = None, queue_name: QueueName = "commands",
                   yes: Yes = False, account_url: AccountUrl = None) -> None:
    """Discard a poisoned command for good."""
    if not yes:
        typer.confirm(f"Discard {message_id} for good?", abort=True)
    with _direct_queue(data_dir, connection, queue_name, account_url) as queue:
        if queue is not None:
            queue.discard_poisoned(message_id)
        else:
            with Remote(url, key, tenant) as remote:
                remote.call("DELETE", remote.path("commands", "poison", message_id), ok=(204,))
    render.console.print(f"discarded {message_id}", highlight=False)


# ---------------------------------------------------------------------------------------------- subscriptions

def subscriptions_put(name: str, endpoint: Annotated[str, typer.Option(help="Webhook URL (it must consent to the "
                                                                            "CloudEvents handshake).")],
                      event_type: Annotated[list[str] | None, typer.Option("--type", help="CloudEvent type "
                                                                                        "(repeatable; default all).")]
                      = None,
                      secret: Annotated[str | None, typer.Option(envvar="WAYMARK_SUBSCRIPTION_SECRET",
                                                                 help="HMAC secret of X-Waymark-Signature.")] = None,
                      mode: Annotated[str, typer.Option(help="structured or binary.")] = "structured",
                      url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False) -> None:
    """Create or replace a webhook subscription."""
    body: dict[str, Any] = {"endpoint": endpoint, "mode": mode, "types": event_type or None}
    if secret is not None:
        body["secret"] = secret
    with Remote(url, key, tenant) as remote:
        result = remote.call("PUT", remote.path("subscriptions", name), json=body, ok=(200, 201)).json()
    _show_subscriptions([result], as_json, single=True)


def subscriptions_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                       as_json: AsJson = False) -> None:
    """Every subscription of the tenant, with its status (active, paused, pending, gone)."""
    with Remote(url, key, tenant) as remote:
        items = remote.call("GET", remote.path("subscriptions")).json()["items"]
    _show_subscriptions(items, as_json)


def subscriptions_get(name: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                      as_json: AsJson = False) -> None:
    """One subscription: its endpoint, types, mode, status, failures and last error (never its secret)."""
    with Remote(url, key, tenant) as remote:
        result = remote.call("GET", remote.path("subscriptions", name)).json()
    _show_subscriptions([result], as_json, single=True)


def subscriptions_delete(name: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo") -> None:
    """Delete a subscription: nothing more is delivered to it."""
    with Remote(url, key, tenant) as remote:
        remote.call("DELETE", remote.path("subscriptions", name), ok=(204,))
    render.console.print(f"deleted {name}", highlight=False)


def subscriptions_resume(name: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                         as_json: AsJson = False) -> None:
    """Resume a paused subscription: what it missed is delivered."""
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("subscriptions", name, "resume")).json()
    _show_subscriptions([result], as_json, single=True)


def subscriptions_pause(name: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                        as_json: AsJson = False) -> None:
    """Pause a subscription: events are kept for it, and delivered when it is resumed."""
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("subscriptions", name, "pause")).json()
    _show_subscriptions([result], as_json, single=True)


def _show_subscriptions(items: list[dict[str, Any]], as_json: bool, *, single: bool = False) -> None:
    if as_json:
        render.print_json(items[0] if single else {"items": items})
        return
    from rich.table import Table

    table = Table("name", "endpoint", "status", "types", "mode", "failures", "last error")
    for item in items:
        table.add_row(str(item.get("name")), str(item.get("endpoint")), str(item.get("status")),
                      ", ".join(item.get("types") or []) or "all", str(item.get("mode")),
                      str(item.get("consecutiveFailures", "")), str(item.get("lastError") or ""))
    render.console.print(table)


# ---------------------------------------------------------------------------------------------- feed

def feed_tail(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
              after: Annotated[int, typer.Option(min=0, help="Start after this position (0: the beginning).")] = 0,
              follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep polling for new events.")]
              = True,
              interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
              limit: Annotated[int, typer.Option(min=1, max=1000)] = 100) -> None:
    """Print the pull feed's CloudEvents from a position on, following it (Ctrl-C stops)."""
    position = after
    try:
        with Remote(url, key, tenant) as remote:
            while True:
                response = remote.call("GET", remote.path("feed"), params={"after": position, "limit": limit})
                for event in response.json():
                    if as_json:
                        typer.echo(_compact(event))
                    else:
                        render.console.print(_feed_line(event), highlight=False, soft_wrap=True)
                position = int(response.headers.get("Waymark-Next-Position", position))
                if not follow:
                    return
                if not response.json():
                    time.sleep(interval)
    except KeyboardInterrupt:
        return


def _feed_line(event: dict[str, Any]) -> str:
    """`2025-01-01 12:00:00 claim-42:3 transitioned draft → awaiting-approval (Waiting)`; an event that did not
    move the instance says where it is (`created in draft`, `trigger-ignored in awaiting-approval`)."""
    from rich.markup import escape

    data = event.get("data") or {}
    kind = str(event.get("type", "")).rsplit(".", 1)[-1]
    before, after = data.get("previousState"), data.get("newState")
    where = f"{before} → {after}" if before is not None and (before != after or kind == "transitioned") \
        else f"in {after}"
    status = f" ({data.get('newStatus')})" if data.get("newStatus") else ""
    return (f"[dim]{render.when(event.get('time'))}[/] {escape(str(event.get('id')))} [bold]{escape(kind)}[/] "
            f"{escape(where)}{escape(status)}")


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------- worker

def worker(data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory [env WAYMARK_DATA_DIR; "
                                                                         "default ./.waymark].")] = None,
           threads: Annotated[int | None, typer.Option("--workers", min=1, max=64,
                                                       help="Worker threads [env WAYMARK_WORKERS].")] = None) -> None:
    """Run queue workers and the change feed on a local data directory (beside `waymark serve --workers 0`)."""
    from engine.hosting.settings import Settings
    from engine.hosting.worker import run

    flags: dict[str, Any] = {"data_dir": data_dir, "workers": threads}
    run(Settings(**{name: value for name, value in flags.items() if value is not None}))


def register(app: typer.Typer, instances_app: typer.Typer) -> None:
    instances_app.command("explain")(instances_explain)
    instances_app.command("recover")(instances_recover)
    instances_app.command("terminate")(instances_terminate)
    instances_app.command("recover-batch")(instances_recover_batch)
    instances_app.command("terminate-batch")(instances_terminate_batch)
    commands_app = Cli(help="Commands on the queue.")
    poison_app = Cli(help="Commands that exhausted their retries.")
    poison_app.command("list")(poison_list)
    poison_app.command("requeue")(poison_requeue)
    poison_app.command("discard")(poison_discard)
    commands_app.add_typer(poison_app, name="poison")
    register_parked(commands_app)
    app.add_typer(commands_app, name="commands")
    subscriptions_app = Cli(help="Webhook subscriptions to the change feed.")
    for name, command in (("put", subscriptions_put), ("list", subscriptions_list), ("get", subscriptions_get),
                          ("delete", subscriptions_delete), ("pause", subscriptions_pause),
                          ("resume", subscriptions_resume)):
        subscriptions_app.command(name)(command)
    app.add_typer(subscriptions_app, name="subscriptions")
    feed_app = Cli(help="The pull change feed.")
    feed_app.command("tail")(feed_tail)
    app.add_typer(feed_app, name="feed")
    app.command("worker")(worker)
