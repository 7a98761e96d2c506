"""The published contracts, without a key: `/schemas/workflow-definition.json` (the definition's JSON Schema),
`/schemas/events/{type}.json` (the `data` of each CloudEvent type, what events name as `dataschema`) and
`/asyncapi.json` (the change feed: webhook and Event Grid channels, AsyncAPI 3.0).

They are public like `/openapi.json`: they describe formats, not any tenant's data.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.api.context import ApiContext
from engine.api.problems import ApiProblem
from engine.schemas import asyncapi_document, definition_schema, event_schema, event_types

__all__ = ["SCHEMA_JSON", "add_routes", "embed_definition_schema"]

SCHEMA_JSON = "application/schema+json"
_CACHE = {"Cache-Control": "public, max-age=300"}


def _own_url(request: Request) -> str:
    """A schema's `$id`: where it was read, without the query — the answer is public and cached, and a query may
    carry a key (the Functions host's `?code=`) that must not be written into it."""
    return str(request.url.replace(query="", fragment=""))


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["schemas"]
    registry = ctx.engine.catalog.registry

    @api.get("/schemas/workflow-definition.json", tags=tags,
             responses={200: {"description": "JSON Schema 2020-12", "content": {SCHEMA_JSON: {}}}},
             summary="The JSON Schema of workflow definitions (what upload validation uses)")
    async def workflow_definition_schema(request: Request) -> JSONResponse:
        schema = {"$id": _own_url(request), **definition_schema(registry)}
        return JSONResponse(schema, media_type=SCHEMA_JSON, headers=_CACHE)

    @api.get("/schemas/events/{event_type}.json", tags=tags,
             responses={200: {"description": "JSON Schema 2020-12 of the `data` of one CloudEvent type",
                              "content": {SCHEMA_JSON: {}}},
                        404: {"description": "No such event type", "content": {"application/problem+json": {}}}},
             summary="The schema a CloudEvent's `dataschema` names: its `data`, by type")
    async def event_data_schema(event_type: str, request: Request) -> JSONResponse:
        try:
            schema = {"$id": _own_url(request), **event_schema(event_type)}
        except KeyError:
            raise ApiProblem(404, "No such event type", f"{event_type!r} is not a Waymark CloudEvent type; the types "
                             f"are {', '.join(event_types())}.", slug="no-such-event-type") from None
        return JSONResponse(schema, media_type=SCHEMA_JSON, headers=_CACHE)

    @api.get("/asyncapi.json", tags=tags,
             responses={200: {"description": "AsyncAPI 3.0", "content": {"application/json": {}}}},
             summary="The change feed described in AsyncAPI 3.0: webhook and Event Grid channels, every event")
    async def asyncapi() -> JSONResponse:
        return JSONResponse(asyncapi_document(), headers=_CACHE)


def embed_definition_schema(components: dict[str, Any], schema: dict[str, Any]) -> str:
    """Put the definition schema into OpenAPI `components.schemas` (its `$defs` as `WorkflowDefinition.<Name>`,
    references rewritten) and answer the name to `$ref`."""
    schema = dict(schema)
    defs = schema.pop("$defs", {})
    schema.pop("$schema", None)
    target = components.setdefault("schemas", {})
    target["WorkflowDefinition"] = _rewrite(schema)
    for name, sub in defs.items():
        target[f"WorkflowDefinition.{name}"] = _rewrite(sub)
    return "#/components/schemas/WorkflowDefinition"


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: (f"#/components/schemas/WorkflowDefinition.{value.removeprefix('#/$defs/')}"
                      if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/") else _rewrite(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    return node
