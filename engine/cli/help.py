"""How `waymark … --help` reads: `Usage: waymark trigger [OPTIONS] INSTANCE TOPIC`, `--url URL`, `--json`.

Typer's defaults write every required argument as `{instance_id}` in the usage line, give each option a
`<str>`/`<int>` type column and show `<bool>` beside flags, which take no value. Here an argument is shown by
its metavar (its name in capitals when it has none), an option that takes a value by its metavar
(`--content JSON`; else its long name in capitals) and a flag by its name alone. Help texts are Markdown
(`rich_markup_mode`), so a docstring's line breaks are not kept mid-sentence and a `[default: …]` in a help
text is not taken for a Rich markup tag and swallowed.

`Cli` is the `typer.Typer` every command group of `waymark` is made with; its commands and groups use these
classes.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["Cli"]


def _capitals(name: str) -> str:
    return name.lstrip("-").replace("-", "_").upper()


class _Argument(TyperArgument):
    """An argument shown by its metavar, without a type column; `[NAME]` when optional."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or _capitals(self.name or "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


class _Option(TyperOption):
    """`--url URL`: an option's value by its metavar; a flag (or a count) shows none."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        longest = max(self.opts, key=len, default=self.name or "")
        return _METAVARS.get(longest) or _capitals(longest) + ("..." if self.nargs != 1 else "")


# Options whose value reads better under another name than their own in capitals.
_METAVARS = {"--data-dir": "DIR", "--wait": "SECONDS", "--interval": "SECONDS", "--content": "JSON",
             "--context": "JSON", "--config": "JSON", "--outputs": "FILE|JSON", "--limit": "N", "--after": "N",
             "--to-sequence": "N", "--instances": "N", "--triggers": "N", "--rounds": "N", "--workers": "N"}

_READABLE: dict[type, type] = {TyperArgument: _Argument, TyperOption: _Option}


def _readable(params: list[Any]) -> list[Any]:
    """The same parameter objects, shown as above. Only their display changes (the subclasses add no state), and
    Typer creates them (and the help option) itself, so their class is set here rather than at construction."""
    for param in params:
        readable = _READABLE.get(type(param))
        if readable is not None:
            param.__class__ = readable
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _readable(super().get_params(ctx))


class Cli(typer.Typer):
    """A `typer.Typer` whose commands and groups show their help as described above."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("cls", Group)
        options.setdefault("rich_markup_mode", "markdown")
        options.setdefault("no_args_is_help", True)
        super().__init__(**options)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **options: Any) -> Any:
        return super().command(name, cls=cls or Command, **options)
