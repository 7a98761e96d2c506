"""The CLI reference page, from the Typer app itself: every command, its usage line, arguments and options."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

import typer

from tools.docs.markdown import cell, code, table

__all__ = ["cli_reference", "commands"]

INTRO = """\
# CLI reference

Generated from the `waymark` command itself (`engine/cli`) at every build of this site: what `--help` says,
for every command. Commands that talk to a server read `WAYMARK_URL`, `WAYMARK_KEY` and `WAYMARK_TENANT`;
the exit status of each is in its description.
"""


def commands(app: typer.Typer) -> Iterator[tuple[Any, Any]]:
    """Every command and group of `app` with its context, depth first, the root first."""
    root = typer.main.get_command(app)

    def walk(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
        yield command, ctx
        for name in getattr(command, "commands", {}) and command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, sub.context_class(sub, info_name=name, parent=ctx))

    yield from walk(root, root.context_class(root, info_name="waymark"))


def slug(ctx: Any) -> str:
    return str(ctx.command_path).replace(" ", "-")


def cli_reference(app: typer.Typer) -> str:
    parts = [INTRO]
    for command, ctx in commands(app):
        parts.append(_section(command, ctx))
    return "\n".join(parts)


def _section(command: Any, ctx: Any) -> str:
    level = "#" * min(ctx.command_path.count(" ") + 2, 4)
    text = [f"{level} {ctx.command_path}\n", _help(command.help), f"```text\n{command.get_usage(ctx)}\n```\n"]
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False) and p.name != "help"]
    if params:
        text.append(table(["argument or option", "value", "default", "environment", "what"],
                          [_row(p, ctx) for p in params]))
    subcommands = [(name, command.get_command(ctx, name)) for name in getattr(command, "commands", {})
                   and command.list_commands(ctx)]
    if subcommands:
        text.append(table(["command", "what"], [
            (f"[{name}](#{slug(ctx)}-{name})", cell(_first_line(sub.help))) for name, sub in subcommands]))
    return "\n".join(text)


def _help(help_text: str | None) -> str:
    body = inspect.cleandoc(help_text or "").split("\f")[0].strip()
    return body + "\n" if body else ""


def _first_line(help_text: str | None) -> str:
    return _help(help_text).split("\n\n")[0]


def _row(param: Any, ctx: Any) -> tuple[str, ...]:
    if param.param_type_name == "argument":
        name = code(param.display_name_raw) + ("" if param.required else " (optional)")
        kind = ""
    else:
        name = ", ".join(code(opt) for opt in [*param.opts, *param.secondary_opts])
        kind = param.display_type_rich(ctx) or ""
    envvar = param.envvar if isinstance(param.envvar, str) else ", ".join(param.envvar or ())
    return (name, code(kind) if kind else "", _default(param), code(envvar) if envvar else "",
            cell(getattr(param, "help", None)) or "")


def _default(param: Any) -> str:
    default = param.default
    if param.required or default is None or callable(default) or (getattr(param, "is_flag", False) and not default):
        return ""
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, PurePath):
        default = str(default)
    if isinstance(default, bool):
        default = "true" if default else "false"
    return code(str(default))
