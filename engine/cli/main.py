"""`waymark`: the command line. Local commands read a data directory; others talk to a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import render
from engine.domain import InvalidDefinition, NotFound, default_registry, load_json, mermaid, parse_definition

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Waymark: an event-sourced workflow engine with a CloudEvents change feed.")
workflows_app = typer.Typer(no_args_is_help=True, help="Validate, draw, upload and read workflow definitions.")
instances_app = typer.Typer(no_args_is_help=True, help="Create, list and inspect workflow instances.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures beside their baselines.")
app.add_typer(workflows_app, name="workflows")
app.add_typer(instances_app, name="instances")
app.add_typer(bench_app, name="bench")

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="WAYMARK_DATA_DIR", help="Local data directory.")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", envvar="WAYMARK_TENANT", help="Tenant id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


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
        definition = parse_definition(_read_definition(file), default_registry())
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


@workflows_app.command("diagram")
def workflows_diagram(file: Path,
                      state: Annotated[str | None, typer.Option(help="State to highlight.")] = None) -> None:
    """Print the definition as a Mermaid stateDiagram-v2."""
    try:
        definition = parse_definition(_read_definition(file), default_registry())
    except InvalidDefinition as e:
        render.console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    typer.echo(mermaid(definition, highlight=state), nl=False)


def _local_engine(data_dir: Path) -> Any:
    from engine.runtime import sqlite_engine

    if not data_dir.exists():
        render.console.print(f"[red]no data directory at {data_dir}[/]")
        raise typer.Exit(2)
    return sqlite_engine(data_dir)


@instances_app.command("show")
def instances_show(instance_id: str, tenant: Tenant = "demo", data_dir: DataDir = Path(".waymark"),
                   as_json: AsJson = False) -> None:
    """Show one instance: state, status, context and fault."""
    engine = _local_engine(data_dir)
    try:
        instance = engine.events.load(tenant, instance_id).to_dict()
    except NotFound as e:
        render.console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    render.print_json(instance) if as_json else render.instance_panel(instance)


@instances_app.command("history")
def instances_history(instance_id: str, tenant: Tenant = "demo", data_dir: DataDir = Path(".waymark"),
                      as_json: AsJson = False) -> None:
    """The instance's events, in order: every trigger and what it did."""
    engine = _local_engine(data_dir)
    events = [e.to_dict() for e in engine.events.read(tenant, instance_id)]
    if not events:
        render.console.print(f"[red]instance {instance_id!r} does not exist in tenant {tenant!r}[/]")
        raise typer.Exit(1)
    render.print_json({"items": events}) if as_json else render.history_table(events)


@bench_app.command("engine")
def bench_engine(as_json: AsJson = False,
                 instances: Annotated[int, typer.Option(help="Instances.")] = 100,
                 triggers: Annotated[int, typer.Option(help="Triggers per instance.")] = 50) -> None:
    """Triggers/s end-to-end on SQLite beside raw SQLite and pyeventsourcing; load time by history length."""
    from engine.cli.bench import run_engine_bench

    run_engine_bench(as_json=as_json, instances=instances, triggers=triggers)


def main() -> None:  # pragma: no cover - console script entry
    app()
