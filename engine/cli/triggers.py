"""`waymark trigger` and `waymark broadcast`: send a trigger to one instance, or to every instance interested in a
subject."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.cli import render
from engine.cli.remote import DEFAULT_URL, EXIT_CODES, NOT_READY, AsJson, Key, Remote, Tenant, Url, Wait, json_option

__all__ = ["register"]


def trigger(instance_id: str, topic: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
            as_json: AsJson = False,
            content: Annotated[str | None, typer.Option(help="Trigger content (JSON).")] = None,
            trigger_id: Annotated[str | None, typer.Option("--id", help="Idempotency key (default: "
                                                                        "generated).")] = None,
            wait: Wait = 0,
            expected_version: Annotated[int | None, typer.Option(
                "--expected-version", min=0, help="Apply only while the instance is at this version (sent as "
                                                  "If-Match); else it is rejected (exit 1 with --wait).")] = None,
            not_before: Annotated[str | None, typer.Option(
                "--not-before", help="Send it at this time (RFC 3339), not before: scheduled, listed by "
                                     "`instances scheduled`, cancelled by `instances cancel`.")] = None,
            delay: Annotated[str | None, typer.Option(
                "--delay", help="Send it after this ISO 8601 duration (PT1H, P3D): scheduled, like "
                                "--not-before.")] = None,
            ) -> None:
    """Send a trigger to an instance (queued; --wait N to see what it did).

    Exit status: 0 applied (or accepted, without --wait), 3 ignored, 4 rejected, 5 faulted, 6 not processed
    within --wait (still queued); 1 an error answer, 2 no server."""
    body: dict[str, Any] = {"topic": topic}
    if expected_version is not None:
        body["expectedVersion"] = expected_version
    if content is not None:
        body["content"] = json_option(content, "--content")
    if trigger_id is not None:
        body["id"] = trigger_id
    for name, value in (("notBefore", not_before), ("delay", delay)):
        if value is not None:
            body[name] = value
    with Remote(url, key, tenant) as remote:
        response = remote.call("POST", remote.path("instances", instance_id, "triggers"), json=body,
                               ok=(200, 202), wait=wait)
    result = response.json()
    if as_json:
        render.print_json(result)
    elif result.get("scheduled"):
        render.console.print(f"scheduled: trigger {result['triggerId']} at {result['notBefore']}", highlight=False,
                             markup=False)
        return
    elif response.status_code == 200:
        render.outcome_line(result)
        render.instance_panel(result["instance"])
    else:
        render.console.print(f"accepted: trigger {result['triggerId']}"
                             + (f"; not processed within {wait:g} s" if wait else ""), highlight=False)
    if response.status_code == 200 and EXIT_CODES.get(str(result.get("outcome"))):
        raise typer.Exit(EXIT_CODES[str(result.get("outcome"))])
    if response.status_code == 202 and wait:
        raise typer.Exit(NOT_READY)


def broadcast(topic: str, subject: Annotated[list[str], typer.Option(help="Subject (repeatable); every instance "
                                                                          "interested in one gets the trigger.")],
              url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False,
              content: Annotated[str | None, typer.Option(help="Trigger content (JSON).")] = None,
              trigger_id: Annotated[str | None, typer.Option("--id", help="Idempotency key.")] = None) -> None:
    """Send a trigger to every instance interested in one of the subjects (queued)."""
    body: dict[str, Any] = {"topic": topic, "subjects": subject}
    if content is not None:
        body["content"] = json_option(content, "--content")
    if trigger_id is not None:
        body["id"] = trigger_id
    with Remote(url, key, tenant) as remote:
        result = remote.call("POST", remote.path("triggers"), json=body, ok=(202,)).json()
    if as_json:
        render.print_json(result)
    else:
        render.console.print(f"accepted: broadcast trigger {result['triggerId']} to {', '.join(subject)}",
                             highlight=False)


def register(app: typer.Typer) -> None:
    """Add `trigger` and `broadcast` to the `waymark` app."""
    app.command("trigger")(trigger)
    app.command("broadcast")(broadcast)
