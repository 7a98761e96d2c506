"""What the generated reference pages are: their site paths and contents (Markdown or JSON)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["generated_pages"]

def _json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated_pages() -> dict[str, str]:
    """Site path → content. Imports here: building the docs is the only thing that needs all of these at once."""
    from engine.cli.main import app
    from engine.hosting.azure_settings import SETTINGS
    from engine.hosting.settings import Settings
    from engine.schemas import asyncapi_document, event_schema, event_types, load
    from tools.docs.api_reference import http_api_reference, openapi_document
    from tools.docs.cli_reference import cli_reference
    from tools.docs.config_reference import configuration_reference
    from tools.docs.schema_reference import definition_reference, events_reference

    openapi = openapi_document()
    definition = load("workflow-definition.json")
    events = {event_type: event_schema(event_type) for event_type in event_types()}
    pages: dict[str, str] = {
        "reference/cli.md": cli_reference(app),
        "reference/configuration.md": configuration_reference(Settings, app, SETTINGS),
        "reference/http-api.md": http_api_reference(openapi),
        "reference/openapi.json": _json(openapi),
        "reference/definition.md": definition_reference(definition),
        "reference/workflow-definition.json": _json(definition),
        "reference/events.md": events_reference(asyncapi_document(), events),
        "reference/asyncapi.json": _json(load("asyncapi.json")),
    }
    pages.update({f"reference/events/{name}.json": _json(schema) for name, schema in events.items()})
    return pages
