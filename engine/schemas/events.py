"""The JSON Schemas of the CloudEvents' `data` (one per type, `events/{type}.json`) and the AsyncAPI 3.0 document
of the change feed (`asyncapi.json`).

A CloudEvent names its schema in `dataschema`: `{base}/schemas/events/{type}.json`, where `base` is the server's
public URL (`WAYMARK_PUBLIC_URL`; on Azure `https://{WEBSITE_HOSTNAME}`), and every server serves the schema at
that path without a key. The file name is the CloudEvent type, so a consumer that keeps copies (or generated code)
maps an event to its schema by `type` alone, whichever server sent it.

`asyncapi.json` in the repository refers to the event schemas by relative path (`events/…json`), so AsyncAPI
tools read it from a checkout; `asyncapi_document()` is the same document with them inlined under
`components.schemas`, which is what `/asyncapi.json` serves.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from engine.schemas.definition import load

__all__ = ["DEFAULT_SCHEMA_BASE", "EVENT_SCHEMA_PATH", "asyncapi_document", "dataschema", "event_schema",
           "event_types"]

EVENT_SCHEMA_PATH = "/schemas/events/{type}.json"
# Where `waymark serve` listens by default; the base of `dataschema` when a host names none.
DEFAULT_SCHEMA_BASE = "http://127.0.0.1:8080"
_RELATIVE = re.compile(r"^events/(?P<type>[A-Za-z0-9.-]+)\.json$")


def dataschema(base: str, event_type: str) -> str:
    return base.rstrip("/") + EVENT_SCHEMA_PATH.format(type=event_type)


@functools.cache
def event_types() -> tuple[str, ...]:
    """The CloudEvent types that have a schema (the file names under events/)."""
    folder = resources.files(__package__).joinpath("events")
    return tuple(sorted(entry.name.removesuffix(".json") for entry in folder.iterdir()
                        if entry.name.endswith(".json")))


def event_schema(event_type: str) -> dict[str, Any]:
    """The schema of one type's `data`. Raises KeyError for a type without one."""
    if event_type not in event_types():
        raise KeyError(event_type)
    return load(f"events/{event_type}.json")


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document with the event schemas inlined (every `$ref` local)."""
    document = load("asyncapi.json")
    schemas = document["components"]["schemas"]
    for name in event_types():
        inlined = event_schema(name)
        inlined.pop("$schema", None)
        schemas[name] = inlined
    return _localised(document)


def _localised(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and (match := _RELATIVE.match(ref)):
            return {**node, "$ref": f"#/components/schemas/{match.group('type')}"}
        return {key: _localised(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_localised(item) for item in node]
    return node
