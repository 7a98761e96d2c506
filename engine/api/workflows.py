"""Workflow definitions: upload (validated, every problem listed), read, list, and the Mermaid diagram."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.models import WorkflowList, WorkflowVersion, json_safe
from engine.api.preconditions import Precondition, precondition
from engine.api.problems import ApiProblem, is_json_media_type, unsupported_media_type
from engine.domain import (
    DefinitionChanged,
    InvalidDefinition,
    Problem,
    WorkflowDefinition,
    WorkflowNotFound,
    load_json,
    mermaid,
    redacted,
)

MAX_VERSION = 2**31
_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"


def _sample() -> Any:
    try:
        return json.loads(_SAMPLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"id": "expense-claim", "initialState": "draft", "states": {"draft": {}}}


def parse_document(raw: bytes) -> Any:
    """The uploaded JSON (duplicate keys remembered, so a duplicate state id is reported, not lost)."""
    try:
        return load_json(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiProblem(400, "Malformed JSON", f"The request body is not JSON: {e}", slug="malformed-json") from e


def checked_document(document: Any, workflow_id: str) -> dict[str, Any]:
    """The document to store under `workflow_id`, or InvalidDefinition listing every problem found."""
    if not isinstance(document, dict):
        raise InvalidDefinition(workflow_id, [Problem("$", "a workflow definition must be a JSON object")])
    problems: list[Problem] = []
    given = document.get("id")
    if given is not None and given != workflow_id:
        problems.append(Problem("$.id", f"is {given!r} but the URL names the workflow {workflow_id!r}; "
                                        "leave it out or make them equal"))
    try:
        json_safe(document)
    except ValueError as e:
        problems.append(Problem("$", str(e)))
    document["id"] = workflow_id
    if problems:
        raise InvalidDefinition(workflow_id, problems)
    return document


def _stored(definition: WorkflowDefinition) -> dict[str, Any]:
    """The stored version as it may be shown: every secret "***" (engine/domain/secrets.py)."""
    return {**redacted(definition.document), "id": definition.id, "version": definition.version}


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["workflows"]
    catalog = ctx.engine.catalog

    def put(tenant: str, workflow_id: str, document: Any, condition: Precondition) -> WorkflowDefinition:
        try:
            checked = checked_document(document, workflow_id)
        except InvalidDefinition as first:
            # Go on to the definition itself, so the answer lists its problems too, not only the first kind.
            try:
                catalog.validate({**document, "id": workflow_id} if isinstance(document, dict) else document)
            except InvalidDefinition as more:
                known = {(p.path, p.message) for p in first.problems}
                first.problems.extend(p for p in more.problems if (p.path, p.message) not in known)
                raise InvalidDefinition(workflow_id, first.problems) from None
            raise
        if condition.must_exist:
            try:
                catalog.document(tenant, workflow_id)
            except WorkflowNotFound:
                raise DefinitionChanged(tenant, workflow_id, None, 0) from None
        return catalog.put(tenant, checked, expected_version=condition.expected_version)

    @api.put("/tenants/{tenant}/workflows/{workflow_id}", tags=tags, response_model=WorkflowVersion,
             responses={200: {"description": "A new version of an existing workflow", "model": WorkflowVersion},
                        201: {"description": "The first version of the workflow", "model": WorkflowVersion},
                        412: {"description": "`If-Match` names a version that is no longer the latest (or "
                                             "`If-None-Match: *` and the workflow exists): nothing was stored; "
                                             "`ETag` and `version` are the latest",
                              "content": {"application/problem+json": {
                                  "schema": {"$ref": "#/components/schemas/ProblemDetails"}}}},
                        **problem_responses(400, 401, 403, 404, 413, 415, 422, 503)},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/WorkflowDefinition"}, "example": _sample()}}},
                 "parameters": [
                     {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": '`"<version>"` (the ETag a GET answered): store only if that is still the '
                                     "latest version, else 412. `*`: only if the workflow exists."},
                     {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": "`*`: store only if the workflow does not exist yet (else 412)."}]},
             summary="Upload a definition: validated (422 lists every problem), stored as a new version; "
                     "`If-Match` makes it conditional on the version read")
    async def put_workflow(tenant: str, workflow_id: str, request: Request) -> JSONResponse:
        condition = precondition(request.headers.get("if-match"), request.headers.get("if-none-match"))
        raw = await request.body()
        if not is_json_media_type(request.headers.get("content-type")):
            raise unsupported_media_type(request.headers.get("content-type"))
        document = parse_document(raw)
        definition = await ctx.run(put, tenant, workflow_id, document, condition)
        return JSONResponse(_stored(definition), status_code=201 if definition.version == 1 else 200,
                            headers={"Location": f"/tenants/{tenant}/workflows/{workflow_id}"
                                                 f"?version={definition.version}", "ETag": f'"{definition.version}"'})

    @api.get("/tenants/{tenant}/workflows", tags=tags, response_model=WorkflowList,
             responses=problem_responses(*AUTH_PROBLEMS),
             summary="Every workflow of the tenant with its latest version")
    async def list_workflows(tenant: str) -> JSONResponse:
        listed = await ctx.run(catalog.list, tenant)
        return JSONResponse({"items": [{"id": workflow_id, "version": version} for workflow_id, version in listed]})

    @api.get("/tenants/{tenant}/workflows/{workflow_id}", tags=tags, response_model=WorkflowVersion,
             responses={304: {"description": "Not modified (`If-None-Match` matched the version)"},
                        **problem_responses(*AUTH_PROBLEMS, 422)},
             summary="A definition: the latest or a given version, with `ETag` = its version")
    async def get_workflow(
            tenant: str, workflow_id: str,
            version: Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="Default: latest")] = None,
            if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        found_version, document = await ctx.run(catalog.document, tenant, workflow_id, version)
        etag = f'"{found_version}"'
        if if_none_match is not None and ({"*", etag} & {t.strip() for t in if_none_match.split(",")}):
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse({**document, "id": workflow_id, "version": found_version}, headers={"ETag": etag})

    def diagram(tenant: str, workflow_id: str, version: int | None, instance_id: str | None) -> tuple[
            WorkflowDefinition, str | None]:
        highlight = None
        if instance_id is not None:
            instance = ctx.engine.events.load(tenant, instance_id)
            if instance.workflow_id != workflow_id:
                raise ApiProblem(422, "Instance of another workflow",
                                 f"instance {instance_id!r} of tenant {tenant!r} is an instance of workflow "
                                 f"{instance.workflow_id!r}, not {workflow_id!r}", slug="instance-of-another-workflow",
                                 errors=[{"path": "query.instance", "message": "is an instance of another workflow"}])
            highlight = instance.state
            version = version or instance.workflow_version
        return catalog.get(tenant, workflow_id, version), highlight

    @api.get("/tenants/{tenant}/workflows/{workflow_id}/diagram", tags=tags,
             responses={200: {"content": {"text/plain": {"example": "stateDiagram-v2\n    [*] --> draft\n"},
                                          "application/json": {}},
                              "description": "Mermaid `stateDiagram-v2` (text), or JSON with `?format=json`"},
                        **problem_responses(*AUTH_PROBLEMS, 422)},
             summary="The definition as a Mermaid state diagram, optionally highlighting an instance's state")
    async def get_diagram(tenant: str, workflow_id: str,
                          version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
                          instance: Annotated[str | None, Query(description="Highlight this instance's state "
                                                                            "(and draw its pinned version)")] = None,
                          format: Annotated[Literal["mermaid", "json"], Query()] = "mermaid") -> Response:
        definition, highlight = await ctx.run(diagram, tenant, workflow_id, version, instance)
        text = mermaid(definition, highlight=highlight)
        if format == "json":
            return JSONResponse({"workflowId": definition.id, "version": definition.version, "highlight": highlight,
                                 "mermaid": text})
        return PlainTextResponse(text)

