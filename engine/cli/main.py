"""`waymark`: the command line. Local commands read a data directory; others talk to a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import render
from engine.cli.bench import bench_app
from engine.cli.help import Cli
from engine.domain import InvalidDefinition, default_registry, load_json
from engine.service.definitions import validate_definition

app = Cli(add_completion=False, help="Waymark: an event-sourced workflow engine with a CloudEvents change feed.")
workflows_app = Cli(help="Validate, draw, upload and read workflow definitions.")
instances_app = Cli(help="Create, list and inspect workflow instances.")
app.add_typer(workflows_app, name="workflows")
app.add_typer(instances_app, name="instances")
app.add_typer(bench_app, name="bench")

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="WAYMARK_DATA_DIR", help="Local data directory.")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", envvar="WAYMARK_TENANT", help="Tenant id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from engine import __version__

        typer.echo(f"waymark {__version__}")
        raise typer.Exit()


@app.callback()
def waymark(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                  help="Print the version and exit.")] = False) -> None:
    """Waymark: an event-sourced workflow engine with a CloudEvents change feed."""


def _read_definition(path: Path) -> Any:
    try:
        return load_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        render.console.print(f"[red]cannot read {path}: {e}[/]")
        raise typer.Exit(2) from e
    except json.JSONDecodeError as e:
        render.console.print(f"[red]{path} is not JSON: {e}[/]")
        raise typer.Exit(1) from e


@workflows_app.command("validate")
def workflows_validate(file: Path, as_json: AsJson = False) -> None:
    """Check a definition; list every problem and exit 1 when it is invalid."""
    try:
        definition = validate_definition(_read_definition(file), default_registry())
    except InvalidDefinition as e:
        if as_json:
            render.print_json({"valid": False, "problems": [{"path": p.path, "message": p.message}
                                                             for p in e.problems]})
        else:
            render.console.print(f"[bold red]{file} is invalid[/] ({len(e.problems)} problem(s)):")
            for problem in e.problems:
                render.console.print(f"  [red]✗[/] {problem.path}: {problem.message}", highlight=False)
        raise typer.Exit(1) from e
    if as_json:
        render.print_json({"valid": True, "id": definition.id, "states": len(definition.states)})
    else:
        render.console.print(f"[green]✓[/] {file}: workflow {definition.id!r} is valid "
                             f"({len(definition.states)} states)")


# Commands that talk to a running server (and `serve` itself) live in their own modules, by group.
# `workflows diagram` and `instances show/history` are there too: they read a file or a data directory when
# given one, and ask the server otherwise.
from engine.cli.instances import register as register_instances  # noqa: E402
from engine.cli.marain import import_marain  # noqa: E402
from engine.cli.operations import register as register_operations  # noqa: E402
from engine.cli.serve import serve  # noqa: E402
from engine.cli.tenants import register as register_tenants  # noqa: E402
from engine.cli.time_commands import register as register_time_commands  # noqa: E402
from engine.cli.triggers import register as register_triggers  # noqa: E402
from engine.cli.workflows import register as register_workflows  # noqa: E402

app.command("serve")(serve)
workflows_app.command("import-marain")(import_marain)
register_tenants(app)
register_workflows(workflows_app)
register_instances(instances_app)
register_triggers(app)
register_operations(app, instances_app)
register_time_commands(instances_app)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":
    app()
