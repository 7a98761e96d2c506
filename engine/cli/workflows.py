"""`waymark workflows put/get/list/diagram`: definitions on a server (`diagram` also draws a local file when its
argument is a file that exists)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from engine.cli import render
from engine.cli.remote import DEFAULT_URL, AsJson, Key, Remote, Tenant, Url, fail, read_json_file

__all__ = ["register"]


def workflows_put(file: Path, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                  as_json: AsJson = False,
                  workflow_id: Annotated[str | None, typer.Option("--id", help="Workflow id (default: the "
                                                                              "file's `id`).")] = None) -> None:
    """Upload a definition: a new version (the server lists every problem of an invalid one)."""
    document = read_json_file(file)
    name = workflow_id or (document.get("id") if isinstance(document, dict) else None)
    if not isinstance(name, str) or not name:
        fail(f"{file} has no `id`; give one with --id", 2)
    with Remote(url, key, tenant) as remote:
        response = remote.call("PUT", remote.path("workflows", name), json=document, ok=(200, 201))
    stored = response.json()
    if as_json:
        render.print_json(stored)
    else:
        verb = "created" if response.status_code == 201 else "updated"
        render.console.print(f"[green]✓[/] workflow [bold]{stored['id']}[/] {verb}: version {stored['version']}",
                             highlight=False)


def workflows_get(workflow_id: str, url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo",
                  version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None) -> None:
    """Print a stored definition (JSON, with its version)."""
    with Remote(url, key, tenant) as remote:
        params = {"version": version} if version is not None else {}
        render.print_json(remote.call("GET", remote.path("workflows", workflow_id), params=params).json())


def workflows_list(url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo", as_json: AsJson = False) -> None:
    """Every workflow of the tenant with its latest version."""
    with Remote(url, key, tenant) as remote:
        listed = remote.call("GET", remote.path("workflows")).json()
    if as_json:
        render.print_json(listed)
        return
    table = Table("workflow", "latest version")
    for item in listed["items"]:
        table.add_row(item["id"], str(item["version"]))
    render.console.print(table)


def workflows_diagram(file_or_id: Annotated[str, typer.Argument(metavar="FILE_OR_ID",
                                                                help="A definition file, or a workflow id on the "
                                                                     "server.")],
                      state: Annotated[str | None, typer.Option(help="State to highlight.")] = None,
                      instance: Annotated[str | None, typer.Option(help="Highlight this instance's state "
                                                                        "(server).")] = None,
                      version: Annotated[int | None, typer.Option(help="Version (server).")] = None,
                      url: Url = DEFAULT_URL, key: Key = None, tenant: Tenant = "demo") -> None:
    """Print a definition as a Mermaid stateDiagram-v2: from a local FILE, or fetched from the server by id."""
    path = Path(file_or_id)
    if path.is_file():
        from engine.domain import InvalidDefinition, default_registry, mermaid
        from engine.service.definitions import validate_definition

        try:
            definition = validate_definition(read_json_file(path), default_registry())
        except InvalidDefinition as e:
            fail(str(e), 1)
        typer.echo(mermaid(definition, highlight=state), nl=False)
        return
    params: dict[str, Any] = {}
    if instance is not None:
        params["instance"] = instance
    if version is not None:
        params["version"] = version
    with Remote(url, key, tenant) as remote:
        text = remote.call("GET", remote.path("workflows", file_or_id, "diagram"), params=params).text
    if state is not None and instance is None:  # drawn here as the local diagram draws it
        node = "".join(c if c.isalnum() or c == "_" else "_" for c in state)
        text += f"    classDef current fill:#f96,stroke:#333,stroke-width:2px\n    class {node} current\n"
    typer.echo(text, nl=False)


def register(workflows_app: typer.Typer) -> None:
    """Add the remote commands to the `workflows` group."""
    workflows_app.command("put")(workflows_put)
    workflows_app.command("get")(workflows_get)
    workflows_app.command("list")(workflows_list)
    workflows_app.command("diagram")(workflows_diagram)
