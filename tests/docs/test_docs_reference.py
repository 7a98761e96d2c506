"""The generated reference pages of the documentation site (tools/docs) say everything their sources declare: every
command and option, every setting, every operation and schema, every definition part and event type. They are made
at every build (`make docs`), so what is checked here is that the generators leave nothing out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import app
from engine.hosting.azure_settings import SETTINGS
from engine.hosting.settings import Settings
from engine.schemas import asyncapi_document, event_schema, event_types, load
from tools.docs.api_reference import http_api_reference, openapi_document, operation_anchor
from tools.docs.cli_reference import cli_reference, commands
from tools.docs.config_reference import configuration_reference, env_names, serve_flags
from tools.docs.schema_reference import anchor, definition_reference, events_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_page_has_every_command_and_option() -> None:
    page = cli_reference(app)
    found = list(commands(app))
    assert len(found) > 30
    for command, ctx in found:
        assert f"# {ctx.command_path}\n" in page
        assert command.get_usage(ctx) in page
        for param in command.get_params(ctx):
            if param.name != "help" and not getattr(param, "hidden", False):
                shown = param.opts if param.param_type_name == "option" else [param.display_name_raw]
                assert all(f"`{opt}`" in page for opt in shown), (ctx.command_path, param.name)


def test_the_configuration_page_has_every_setting_with_its_default() -> None:
    page = configuration_reference(Settings, app, SETTINGS)
    for field, info in Settings.model_fields.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{env_names(Settings, field)[0]}`"))
        if info.default not in (None, ""):
            default = info.default if not isinstance(info.default, float) else f"{info.default:g}"
            assert f"`{str(default).lower() if isinstance(default, bool) else default}`" in row, field
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in page
    assert "`WAYMARK_URL`" in page and "`WAYMARK_KEY`" in page and "`WAYMARK_TENANT`" in page


def test_serve_flags_are_matched_to_their_settings() -> None:
    flags = serve_flags(app)
    assert flags["data_dir"] == "--data-dir" and flags["cosmos_verify"] == "--cosmos-no-verify"
    assert set(flags) <= set(Settings.model_fields)


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return openapi_document()


def test_the_http_api_page_has_every_operation_and_schema(openapi: dict[str, Any]) -> None:
    page = http_api_reference(openapi)
    for path, operations in openapi["paths"].items():
        for method in operations:
            assert f"### {method.upper()} {path} {{ #{operation_anchor(method, path)} }}" in page
    for name in openapi["components"]["schemas"]:
        if not name.startswith("WorkflowDefinition"):
            assert f"{{ #schema-{anchor(name)} }}" in page
    assert "/tenants/{tenant}/feed" in openapi["paths"], "the document is the whole app's, change feed included"


def test_the_definition_page_has_every_part() -> None:
    schema = load("workflow-definition.json")
    page = definition_reference(schema)
    for name in ["workflow-definition", *schema["$defs"]]:
        assert f"{{ #{anchor(name)} }}" in page
    for name in schema["properties"]:
        assert f"| `{name}` |" in page


def test_the_events_page_has_every_type_and_its_fields() -> None:
    page = events_reference(asyncapi_document(), {name: event_schema(name) for name in event_types()})
    for name in event_types():
        assert f"### {name} {{ #{anchor(name)} }}" in page
        for field in event_schema(name)["properties"]:
            assert f"| `{field}` |" in page
    assert "## Channels" in page and "### Webhook deliveries" in page


def test_no_generated_page_is_kept_in_the_repository() -> None:
    """A hand-kept copy would drift: the reference pages exist only in the built site."""
    assert not (ROOT / "docs" / "reference").exists()
