"""The definition and change-feed reference pages, from `engine/schemas`: the workflow definition's JSON Schema, the
event data schemas and the AsyncAPI document."""

from __future__ import annotations

import re
from typing import Any

from tools.docs.markdown import cell, code, table
from tools.docs.schema_tables import kind, limits, properties_table, variants

__all__ = ["anchor", "definition_reference", "events_reference"]

DEFINITION_INTRO = """\
# Workflow definition reference

Generated at every build of this site from `engine/schemas/workflow-definition.json`, the one source of the
definition's wire shape: every upload (`PUT /tenants/{{tenant}}/workflows/{{workflow}}`) and
`waymark workflows validate` check it, and every server serves it without a key at
`GET /schemas/workflow-definition.json` ([this build's copy](workflow-definition.json)). Point a definition's
`$schema` at it and an editor completes and checks the file. What a schema cannot say (targets exist, every state
is reachable, ids are unique, CEL compiles) the server checks beyond it, and lists every problem of both at once.

{description}
"""

EVENTS_INTRO = """\
# Change feed reference

Generated at every build of this site from `engine/schemas`: the AsyncAPI 3.0 document of the change feed
([asyncapi.json](asyncapi.json), the same as `GET /asyncapi.json`) and the JSON Schema of each CloudEvent type's
`data` (`GET /schemas/events/{{type}}.json`, named by each event's `dataschema`). How to subscribe, verify and
consume is in [Change feed](../change-feed.md).

{description}
"""


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _local(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return f"[{name}](#{anchor(name)})"


def definition_reference(schema: dict[str, Any]) -> str:
    parts = [DEFINITION_INTRO.format(description=schema.get("description", "")),
             f"## Workflow definition {{ #{anchor('workflow-definition')} }}\n", properties_table(schema, _local)]
    for name, part in schema.get("$defs", {}).items():
        parts.append(_part(name, part))
    return "\n".join(parts)


def _part(name: str, schema: dict[str, Any]) -> str:
    text = [f"## {name} {{ #{anchor(name)} }}\n"]
    if schema.get("description"):
        text.append(schema["description"] + "\n")
    if "allOf" in schema:
        text.append(f"An object whose `type` is {kind(schema.get('properties', {}).get('type'), _local)}; "
                    "the type chooses the rest of its shape:\n\n" + variants(schema, _local))
    elif "properties" in schema:
        text.append(properties_table(schema, _local))
    else:
        words = ", ".join([kind(schema, _local), *limits(schema)])
        text.append(f"Value: {words}.\n")
    return "\n".join(text)


def events_reference(asyncapi: dict[str, Any], event_schemas: dict[str, dict[str, Any]]) -> str:
    """`asyncapi`: the document with the event schemas inlined (`engine.schemas.asyncapi_document()`)."""
    messages = asyncapi["components"]["messages"]

    def link(ref: str) -> str:
        target = _resolve(asyncapi, ref)
        name = target.get("name") if isinstance(target, dict) else None
        if ref.startswith("#/components/schemas/") or name is None:
            name = ref.rsplit("/", 1)[-1]
        return f"[{name}](#{anchor(name)})"

    parts = [EVENTS_INTRO.format(description=asyncapi["info"].get("description", "")), _operations(asyncapi, link),
             _channels(asyncapi, link), "## Envelope and headers\n"]
    for name, schema in asyncapi["components"]["schemas"].items():
        if name not in event_schemas:
            parts.append(f"### {name} {{ #{anchor(name)} }}\n\n{schema.get('description', '')}\n\n"
                         + properties_table(schema, link))
    parts.append("## Messages\n")
    for message in messages.values():
        if message.get("name") not in event_schemas:
            parts.append(f"### {message['name']} {{ #{anchor(message['name'])} }}\n\n**{message.get('title', '')}**. "
                         f"{message.get('summary', '')}\n")
    parts.append("## Event types\n\nOne section per CloudEvent `type`: the fields of its `data`.\n")
    for event_type, schema in event_schemas.items():
        parts.append(f"### {event_type} {{ #{anchor(event_type)} }}\n\n{schema.get('description', '')} "
                     f"([JSON Schema](events/{event_type}.json))\n\n" + properties_table(schema, link))
    return "\n".join(parts)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for key in ref.removeprefix("#/").split("/"):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and "$ref" in node:
        return _resolve(document, node["$ref"])
    return node


def _operations(asyncapi: dict[str, Any], link: Any) -> str:
    text = ["## Operations\n"]
    for name, operation in asyncapi.get("operations", {}).items():
        channel = _resolve(asyncapi, operation["channel"]["$ref"])
        method = operation.get("bindings", {}).get("http", {}).get("method", "")
        text.append(f"### {operation.get('title', name)} {{ #{anchor(name)} }}\n")
        text.append(f"{code(operation['action'])} on [{channel.get('title', '')}](#{anchor(_name(operation))})"
                    + (f", HTTP {code(method)}" if method else "") + ". "
                    + cell(operation.get("summary", "")) + " " + cell(operation.get("description", "")) + "\n")
        text.append("Messages: " + ", ".join(link(m["$ref"]) for m in operation.get("messages", ())) + "\n")
    return "\n".join(text)


def _name(operation: dict[str, Any]) -> str:
    return "channel-" + operation["channel"]["$ref"].rsplit("/", 1)[-1]


def _channels(asyncapi: dict[str, Any], link: Any) -> str:
    text = ["## Channels\n"]
    for name, channel in asyncapi.get("channels", {}).items():
        servers = ", ".join(s["$ref"].rsplit("/", 1)[-1] for s in channel.get("servers", ()))
        text.append(f"### {channel.get('title', name)} {{ #channel-{anchor(name)} }}\n")
        text.append(f"Address {code(channel.get('address', ''))} on {servers}. {channel.get('description', '')}\n")
        text.append("Messages: " + ", ".join(link(m["$ref"]) for m in channel.get("messages", {}).values()) + "\n")
    rows = [(code(name), code(server.get("host", "") + server.get("pathname", "")), code(server.get("protocol", "")),
             cell(server.get("description"))) for name, server in asyncapi.get("servers", {}).items()]
    text.append("Servers:\n\n" + table(["server", "host", "protocol", "what"], rows))
    return "\n".join(text)
