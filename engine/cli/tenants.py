"""`waymark tenants`: onboard a tenant on a server, show it, rotate its key (onboarding into a local data
directory is in onboard.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.cli import render
from engine.cli.help import Cli
from engine.cli.onboard import tenants_onboard
from engine.cli.onboard_bicep import tenants_record_outputs
from engine.cli.remote import DEFAULT_URL, AdminKey, AsJson, Key, Remote, Url, json_option

__all__ = ["register"]


def tenants_create(tenant_id: str, url: Url = DEFAULT_URL, key: AdminKey = None, as_json: AsJson = False,
                   config: Annotated[str | None, typer.Option(help="Tenant configuration (JSON object).")] = None,
                   ) -> None:
    """Onboard a tenant (admin key); prints its key, shown this once."""
    body: dict[str, Any] = {"id": tenant_id}
    if config is not None:
        body["config"] = json_option(config, "--config")
    with Remote(url, key) as remote:
        created = remote.call("POST", "/tenants", json=body, ok=(201,)).json()
    if as_json:
        render.print_json(created)
    else:
        render.console.print(f"[green]✓[/] tenant [bold]{created['id']}[/] created; its key (shown once):",
                             highlight=False)
        typer.echo(created["key"])


def tenants_show(tenant_id: str, url: Url = DEFAULT_URL, key: Key = None) -> None:
    """A tenant (its own key or the admin key)."""
    with Remote(url, key, tenant_id) as remote:
        render.print_json(remote.call("GET", remote.path()).json())


def tenants_rotate_key(tenant_id: str, url: Url = DEFAULT_URL, key: Key = None, as_json: AsJson = False) -> None:
    """Replace a tenant's key; prints the new key, shown this once. The old key stops working."""
    with Remote(url, key, tenant_id) as remote:
        rotated = remote.call("POST", remote.path("keys")).json()
    if as_json:
        render.print_json(rotated)
    else:
        typer.echo(rotated["key"])


def register(app: typer.Typer) -> None:
    """Add the `tenants` group to the `waymark` app."""
    tenants_app = Cli(help="Onboard tenants (on a server, or into a data directory with their storage) and rotate "
                           "their keys.")
    tenants_app.command("create")(tenants_create)
    tenants_app.command("onboard")(tenants_onboard)
    tenants_app.command("record-outputs")(tenants_record_outputs)
    tenants_app.command("show")(tenants_show)
    tenants_app.command("rotate-key")(tenants_rotate_key)
    app.add_typer(tenants_app, name="tenants")
