"""`waymark --help` and every command's help read well: a summary for every command, usage lines with
`INSTANCE_ID TOPIC` (not `{instance_id} {topic}`), no `<bool>`/`<str>` type labels, help texts kept whole
(a `[default: …]` or `[env …]` is not eaten as markup), and `waymark --version`."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator

import click
import pytest
import typer
from typer.testing import CliRunner

import engine
from engine.cli.main import app

runner = CliRunner()
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


ALL = list(commands(typer.main.get_command(app)))


def help_of(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env=ENV, prog_name="waymark")
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_has_a_summary() -> None:
    missing = [" ".join(path) for path, command in ALL if path and not (command.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=lambda path: " ".join(path) or "waymark")
def test_help_reads_well(path: tuple[str, ...]) -> None:
    text = help_of(path)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    assert not re.search(r"<(bool|str|int|float|path)[^>]*>", text), text


def test_arguments_and_values_have_names() -> None:
    text = help_of(("trigger",))
    assert "Usage: waymark trigger [OPTIONS] INSTANCE_ID TOPIC" in text
    assert re.search(r"--content\s+JSON\b", text)
    assert re.search(r"--wait\s+SECONDS\b", text)
    assert re.search(r"--json\s+Print JSON", text)  # a flag takes no value


def test_bracketed_help_is_kept() -> None:
    text = " ".join(help_of(("serve",)).replace("│", " ").split())
    assert "[env WAYMARK_DATA_DIR; default ./.waymark]" in text
    onboard = " ".join(help_of(("tenants", "onboard")).replace("│", " ").split())
    assert "[default: cosmos with a Cosmos endpoint, else sqlite]" in onboard


def test_a_summary_is_not_broken_mid_sentence() -> None:
    listed = help_of(("tenants",))
    rows = [line.strip("│ ").strip() for line in listed.splitlines()]
    start = next(i for i, row in enumerate(rows) if row.startswith("onboard"))
    # The docstring breaks its line after "print its key"; the listing wraps at the panel's width instead.
    assert not rows[start + 1].endswith("print its key"), rows[start:start + 4]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"waymark {engine.__version__}\n"
    assert importlib.metadata.version("waymark") == engine.__version__
