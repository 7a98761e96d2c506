"""The configuration reference page, from the settings declarations: `engine.hosting.settings.Settings` (`waymark serve`
and `waymark worker`), the CLI's client options, and `engine.hosting.azure_settings.SETTINGS` (the Functions app)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tools.docs.cli_reference import commands
from tools.docs.markdown import cell, code, table, value
from tools.docs.schema_tables import kind, limits

__all__ = ["configuration_reference", "env_names", "serve_flags"]

INTRO = """\
# Configuration reference

Generated at every build of this site from the declarations in the code: `engine/hosting/settings.py` for
`waymark serve` and `waymark worker`, the CLI's own options, and `engine/hosting/azure_settings.py` for the Azure
Functions app. An environment variable set to a value outside its range or choices stops the server at start
with a message naming it.
"""


def env_names(settings: type[BaseSettings], field: str) -> list[str]:
    """The environment variables a settings field is read from, the first the one to use."""
    info = settings.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        return [str(choice) for choice in info.validation_alias.choices]
    if isinstance(info.validation_alias, str):
        return [info.validation_alias]
    return [str(settings.model_config.get("env_prefix", "")).upper() + field.upper()]


def serve_flags(app: typer.Typer) -> dict[str, str]:
    """`waymark serve`'s flags by the settings field they set (a `--no-…`/`…-no-…` flag sets its field false)."""
    for command, ctx in commands(app):
        if ctx.command_path == "waymark serve":
            params = command.get_params(ctx)
            return {param.name.replace("no_", ""): param.opts[0] for param in params if param.name != "help"}
    raise LookupError("the CLI has no `waymark serve`")


def configuration_reference(settings: type[BaseSettings], app: typer.Typer, azure: Iterable[Any]) -> str:
    return "\n".join([INTRO, _server(settings, serve_flags(app)), _client(app), _azure(azure)])


def _server(settings: type[BaseSettings], flags: dict[str, str]) -> str:
    schema = settings.model_json_schema(by_alias=False)["properties"]
    rows = []
    for field, info in settings.model_fields.items():
        names = env_names(settings, field)
        variable = code(names[0]) + "".join(f" (or {code(name)})" for name in names[1:])
        flag = code(flags[field]) if field in flags else ""
        default = "" if info.default is None else value(info.default if isinstance(info.default, bool | int | float)
                                                         else str(info.default))
        rows.append((variable, flag, _kind(schema[field]), default, cell(info.description)))
    return ("## waymark serve and waymark worker\n\nEvery setting is an environment variable; the `waymark serve` "
            "flag beside it overrides it. No default: unset unless given.\n\n"
            + table(["variable", "flag", "value", "default", "what"], rows))


def _kind(schema: dict[str, Any]) -> str:
    """A field's JSON Schema in a few words (`integer, ≥ 0, ≤ 65,535`); "unset" is said by the default column."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    plain = {key: item for key, item in schema.items() if key not in {"anyOf", "default", "title", "description"}}
    words = [kind(option, str) for option in options] if "anyOf" in schema else [kind(plain, str)]
    bounds = [phrase for option in options for phrase in limits(option) if not phrase.startswith("default")]
    return ", ".join([" or ".join(words), *bounds])


def _client(app: typer.Typer) -> str:
    """The environment variables the CLI's own options read (where a server is, with which key)."""
    found: dict[str, list[str]] = {}
    helps: dict[str, str] = {}
    for command, ctx in commands(app):
        for param in command.get_params(ctx):
            if isinstance(param.envvar, str) and param.opts[0] not in found.get(param.envvar, []):
                found.setdefault(param.envvar, []).append(param.opts[0])
                helps.setdefault(param.envvar, param.help or "")
    rows = [(code(name), ", ".join(code(opt) for opt in opts), cell(helps[name]))
            for name, opts in sorted(found.items())]
    return ("## The CLI\n\nThe `waymark` command's options that an environment variable can give instead "
            "(see the [CLI reference](cli.md)).\n\n" + table(["variable", "option", "what"], rows))


def _azure(settings: Iterable[Any]) -> str:
    rows = []
    for setting in settings:
        notes = [word for word, flag in (("required", setting.required), ("secret", setting.secret),
                                         ("not deployed by main.bicep", not setting.deployed)) if flag]
        default = code(setting.default) if setting.default else ""
        rows.append((code(setting.name), ", ".join(notes), default, cell(setting.description)))
    return ("## The Azure Functions app\n\nThe app settings `function_app.py` reads "
            "(`engine/hosting/azure_settings.py`); `infra/main.bicep` sets those it deploys. A missing or invalid one "
            "stops the app at start with every problem listed.\n\n"
            + table(["app setting", "", "default", "what"], rows))
