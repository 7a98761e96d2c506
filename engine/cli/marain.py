"""`waymark workflows import-marain FILE`: a Marain.Workflow definition (its JSON) as a Waymark one.

The definition goes to stdout (or `--output`); what could not be converted, and what changed meaning, to
stderr, one line each with its JSON path in the Marain document. Exit 0: converted whole and valid; 3: written, but
constructs were left out (listed); 1: the result is not a valid Waymark definition (its problems listed; a Marain
definition with, say, an unreachable state); 2: the file cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from engine.cli import render
from engine.domain import InvalidDefinition, Problem, default_registry
from engine.service.definitions import validate_definition
from engine.service.marain import convert_marain

__all__ = ["import_marain"]

LEFT_OUT = 3


def import_marain(file: Path,
                  output: Annotated[Path | None, typer.Option("--output", "-o",
                                                              help="Write the definition here, not to stdout.")] = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print one JSON report: definition, "
                                                                         "unconverted, notes, problems.")] = False,
                  ) -> None:
    """Convert a Marain.Workflow definition (JSON) to a Waymark one, listing every construct it could not convert."""
    try:
        document = json.loads(file.read_text(encoding="utf-8-sig"))  # .NET tools often write a BOM
    except (OSError, UnicodeDecodeError) as e:
        render.console.print(f"[red]cannot read {file}: {e}[/]")
        raise typer.Exit(2) from e
    except json.JSONDecodeError as e:
        render.console.print(f"[red]{file} is not JSON: {e}[/]")
        raise typer.Exit(1) from e
    conversion = convert_marain(document)
    problems: list[Problem] = []
    try:
        validate_definition(conversion.definition, default_registry())
    except InvalidDefinition as e:
        problems = e.problems
    text = json.dumps(conversion.definition, indent=2, ensure_ascii=False) + "\n"
    if as_json:
        render.print_json({"definition": conversion.definition, "complete": conversion.complete,
                           "unconverted": [{"path": p, "why": w} for p, w in conversion.unconverted],
                           "notes": [{"path": p, "note": n} for p, n in conversion.notes],
                           "problems": [{"path": p.path, "message": p.message} for p in problems]})
    elif output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
    _report(conversion.unconverted, conversion.notes, problems)
    if problems:
        raise typer.Exit(1)
    if not conversion.complete:
        raise typer.Exit(LEFT_OUT)


def _report(unconverted: list[tuple[str, str]], notes: list[tuple[str, str]], problems: list[Problem]) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for path, why in unconverted:
        err.print(f"[yellow]not converted[/] {escape(path)}: {escape(why)}")
    for path, note in notes:
        err.print(f"[cyan]note[/] {escape(path)}: {escape(note)}")
    for problem in problems:
        err.print(f"[red]invalid[/] {escape(problem.path)}: {escape(problem.message)}")
    if unconverted:
        err.print(f"{len(unconverted)} construct(s) not converted")
