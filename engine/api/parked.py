"""Parked commands over HTTP: what the engine could not process, kept in the tenant's own store.

    GET    /tenants/{t}/parked?instanceId=&reason=&since=&until=&limit=&continuation=   a page, in parking order
    GET    /tenants/{t}/parked/{id}                                                   one, with its body
    POST   /tenants/{t}/parked/{id}/requeue                                           replay it now (ahead of the queue)
    DELETE /tenants/{t}/parked/{id}                                                   discard it
    POST   /tenants/{t}/parked/requeue  {"filter"?, "all"?, "dryRun"?, "limit"?}      replay every match
    POST   /tenants/{t}/parked/discard  {"filter"?, "all"?, "dryRun"?, "limit"?}      discard every match

A bulk action needs a filter or `"all": true` (an empty body does nothing by accident); `dryRun` lists what it would
touch. Replaying is engine/service/parked.py's: at once, through the processor, idempotent by trigger id.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, model_validator

from engine.api.bodies import body_openapi, read_body
from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.models import ID, _Body
from engine.api.problems import ApiProblem
from engine.service.parked import MAX_BULK
from engine.stores.parked import MAX_PAGE, REASONS, ParkedQuery

__all__ = ["BulkParkedRequest", "add_routes"]

Reason = Literal["malformed", "instance-exists", "failed", "hold-expired", "poisoned"]
assert set(Reason.__args__) == set(REASONS)  # type: ignore[attr-defined]


class ParkedFilter(_Body):
    instance_id: str | None = Field(None, alias="instanceId", pattern=ID)
    reason: Reason | None = None
    since: str | None = Field(None, max_length=40, description="Parked at or after (RFC 3339).")
    until: str | None = Field(None, max_length=40, description="Parked before (RFC 3339).")


class BulkParkedRequest(_Body):
    model_config = {"json_schema_extra": {"examples": [
        {"filter": {"instanceId": "claim-42"}, "dryRun": True},
        {"filter": {"reason": "failed", "since": "2026-03-01T00:00:00Z"}},
        {"all": True, "limit": 500},
    ]}}

    filter: ParkedFilter = Field(default_factory=lambda: ParkedFilter.model_validate({}))
    all: bool = Field(False, description="Act on every parked command (needed when `filter` is empty).")
    dry_run: bool = Field(False, alias="dryRun", description="List what would be acted on; change nothing.")
    limit: int = Field(100, ge=1, le=MAX_BULK)

    @model_validator(mode="after")
    def _says_what(self) -> BulkParkedRequest:
        if not self.all and self.filter == ParkedFilter.model_validate({}):
            raise ValueError("give a `filter`, or `\"all\": true` to act on every parked command")
        return self


def _query(instance_id: str | None, reason: str | None, since: str | None, until: str | None) -> ParkedQuery:
    try:
        return ParkedQuery(instance_id=instance_id, reason=reason, since=since, until=until)
    except ValueError as e:
        raise ApiProblem(422, "Invalid request", f"The filter is not valid: {e}.", slug="invalid-request",
                         errors=[{"path": "since/until", "message": str(e)}]) from e


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["parked commands"]
    parked = ctx.engine.parked

    @api.get("/tenants/{tenant}/parked", tags=tags, responses=problem_responses(*AUTH_PROBLEMS, 422),
             summary="Commands that could not be processed (malformed, failed on every delivery, held past the "
                     "hold), kept in the tenant's store: a page, in the order they were parked")
    async def list_parked(
            tenant: str,
            instance_id: Annotated[str | None, Query(alias="instanceId", max_length=128)] = None,
            reason: Annotated[Reason | None, Query()] = None,
            since: Annotated[str | None, Query(max_length=40, description="Parked at or after (RFC 3339)")] = None,
            until: Annotated[str | None, Query(max_length=40, description="Parked before (RFC 3339)")] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
            continuation: Annotated[str | None, Query(max_length=300)] = None) -> JSONResponse:
        query = _query(instance_id, reason, since, until)

        def page() -> dict[str, Any]:
            try:
                found = parked.list(tenant, query, limit=limit, continuation=continuation)
            except ValueError as e:
                raise ApiProblem(422, "Invalid request", f"continuation token is not valid: {e}",
                                 slug="invalid-request", errors=[{"path": "query.continuation",
                                                                  "message": "is not a token this server made"}]) from e
            return {"items": [c.to_dict() for c in found.items], "continuation": found.continuation}

        return JSONResponse(await ctx.run(page))

    @api.get("/tenants/{tenant}/parked/{parked_id}", tags=tags, responses=problem_responses(*AUTH_PROBLEMS),
             summary="One parked command, with its body, reason, delivery count and first and last failure")
    async def get_parked(tenant: str, parked_id: str) -> JSONResponse:
        return JSONResponse((await ctx.run(parked.get, tenant, parked_id)).to_dict())

    @api.post("/tenants/{tenant}/parked/{parked_id}/requeue", tags=tags,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Replay a parked command now, ahead of what is queued for its instance (idempotent by trigger "
                      "id); it stays parked if it fails again")
    async def requeue_parked(tenant: str, parked_id: str) -> JSONResponse:
        return JSONResponse(await ctx.run(parked.requeue_one, tenant, parked_id))

    @api.delete("/tenants/{tenant}/parked/{parked_id}", tags=tags, status_code=204,
                responses=problem_responses(*AUTH_PROBLEMS), summary="Discard a parked command for good")
    async def discard_parked(tenant: str, parked_id: str) -> Response:
        await ctx.run(parked.discard_one, tenant, parked_id)
        return Response(status_code=204)

    def bulk(tenant: str, body: BulkParkedRequest, action: str) -> dict[str, Any]:
        wanted = body.filter
        query = _query(wanted.instance_id, wanted.reason, wanted.since, wanted.until)
        run = parked.requeue if action == "requeue" else parked.discard
        return run(tenant, query, limit=body.limit, dry_run=body.dry_run)

    @api.post("/tenants/{tenant}/parked/requeue", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 413, 415, 422),
              openapi_extra=body_openapi(BulkParkedRequest),
              summary="Replay every parked command matching a filter (or all), in parking order; `dryRun` lists them")
    async def requeue_many(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BulkParkedRequest)
        return JSONResponse(await ctx.run(bulk, tenant, body, "requeue"))

    @api.post("/tenants/{tenant}/parked/discard", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 413, 415, 422),
              openapi_extra=body_openapi(BulkParkedRequest),
              summary="Discard every parked command matching a filter (or all); `dryRun` lists them")
    async def discard_many(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BulkParkedRequest)
        return JSONResponse(await ctx.run(bulk, tenant, body, "discard"))
