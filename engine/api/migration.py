"""Moving instances to another version of their workflow: one, or every one a filter matches; dry run first.

Done at once, not queued, like recovery: the processor's load-decide-append loop settles a race with queued
triggers. The target version's own definition decides whether the (mapped) state exists; a migration it refuses
is a `409` listing every problem, and a dry run answers the same verdict without writing anything.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from engine.api.bodies import body_openapi, read_body
from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.instances import new_id
from engine.api.models import ID, JsonObject, _Body
from engine.api.recovery import _Operation, _outcome, _who
from engine.domain import Instance, MigrationRefused, Status
from engine.domain.errors import InvalidCommand, NotFound
from engine.service.migration import matching_instances

__all__ = ["BulkMigrateRequest", "MigrateRequest", "add_routes"]

MAX_BULK = 1000


class MigrateRequest(_Operation):
    model_config = {"json_schema_extra": {"examples": [
        {"toVersion": 3, "reason": "the escalation rule was fixed"},
        {"toVersion": 3, "stateMap": {"review": "checking"}, "contextPatch": {"checked": False},
         "reason": "review is called checking in version 3", "dryRun": True},
    ]}}

    to_version: int = Field(alias="toVersion", ge=1, le=2**31, description="The version to move to.")
    state_map: dict[str, str] = Field(default_factory=dict, alias="stateMap", max_length=1000,
                                      description="Old state id → state id in the target version (a state not "
                                                  "named keeps its id).")
    context_patch: JsonObject | None = Field(None, alias="contextPatch",
                                             description="Merged into the context (null removes a key).")
    dry_run: bool = Field(False, alias="dryRun", description="Say what would happen; change nothing.")


class MigrationFilter(_Body):
    workflow_id: str = Field(alias="workflowId", pattern=ID)
    version: int | None = Field(None, ge=1, description="Only instances on this version.")
    state: str | None = Field(None, pattern=ID)
    status: str | None = Field(None, description="Waiting, Complete, Faulted or Terminated (any case); default: "
                                                 "Waiting and Faulted.")


class BulkMigrateRequest(MigrateRequest):
    model_config = {"json_schema_extra": {"examples": [
        {"filter": {"workflowId": "expense-claim", "version": 2}, "toVersion": 3, "reason": "fixed escalation",
         "dryRun": True},
    ]}}

    filter: MigrationFilter
    limit: int = Field(100, ge=1, le=MAX_BULK)


_STATUSES = {status.value.lower(): status for status in Status}


def _problems(error: MigrationRefused) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in error.problems]


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["operations"]
    processor = ctx.engine.processor

    def preview(tenant: str, instance: Instance, body: MigrateRequest, by: str, operation_id: str) -> dict[str, Any]:
        try:
            decision = processor.plan_migration(tenant, instance, body.to_version, state_map=body.state_map,
                                      context_patch=body.context_patch, by=by, reason=body.reason,
                                      command_id=operation_id)
        except MigrationRefused as e:
            return {"instanceId": instance.id, "outcome": "refused", "detail": str(e), "problems": _problems(e)}
        return {"instanceId": instance.id, "outcome": "would-migrate", "instance": decision.instance.to_dict(),
                "events": [event.to_dict() for event in decision.events]}

    @api.post("/tenants/{tenant}/instances/{instance_id}/migrate", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 409, 413, 415, 422),
              openapi_extra=body_openapi(MigrateRequest),
              summary="Move an instance to another version of its workflow (`Migrated`); `dryRun` only says what "
                      "would happen")
    async def migrate_instance(tenant: str, instance_id: str, request: Request) -> JSONResponse:
        body = await read_body(request, MigrateRequest)
        by, operation_id = _who(request, body.by), body.id or new_id()
        if body.dry_run:
            instance = await ctx.run(ctx.engine.events.load, tenant, instance_id)
            return JSONResponse({"dryRun": True, **await ctx.run(preview, tenant, instance, body, by, operation_id)})
        result = await ctx.run(lambda: processor.migrate(tenant, instance_id, body.to_version,
                                                         state_map=body.state_map, context_patch=body.context_patch,
                                                         by=by, reason=body.reason, command_id=operation_id))
        return JSONResponse(_outcome(result))

    @api.post("/tenants/{tenant}/migrations", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 413, 415, 422),
              openapi_extra=body_openapi(BulkMigrateRequest),
              summary="Migrate every instance a filter matches (default: Waiting and Faulted ones of the workflow); "
                      "`dryRun` says, for each, what would happen")
    async def migrate_many(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BulkMigrateRequest)
        by = _who(request, body.by)
        wanted = body.filter
        statuses: tuple[Status, ...] = (Status.WAITING, Status.FAULTED)
        if wanted.status is not None:
            if wanted.status.lower() not in _STATUSES:
                raise InvalidCommand("filter.status", f"must be one of {', '.join(s.value for s in Status)}")
            statuses = (_STATUSES[wanted.status.lower()],)

        def run() -> dict[str, Any]:
            targets = matching_instances(ctx.engine.events, tenant, wanted.workflow_id, statuses=statuses,
                                         version=wanted.version, state=wanted.state, limit=body.limit)
            report: dict[str, Any] = {"dryRun": body.dry_run, "matched": [i.id for i in targets], "results": []}
            batch = body.id or new_id()
            for instance in targets:
                operation_id = f"{batch}:{instance.id}"
                if body.dry_run:
                    report["results"].append(preview(tenant, instance, body, by, operation_id))
                    continue
                try:
                    result = processor.migrate(tenant, instance.id, body.to_version, state_map=body.state_map,
                                               context_patch=body.context_patch, by=by, reason=body.reason,
                                               command_id=operation_id)
                    report["results"].append({"instanceId": instance.id, **_outcome(result)})
                except MigrationRefused as e:
                    report["results"].append({"instanceId": instance.id, "outcome": "refused", "detail": str(e),
                                              "problems": _problems(e)})
                except NotFound as e:
                    report["results"].append({"instanceId": instance.id, "outcome": "refused", "detail": str(e)})
            return report

        return JSONResponse(await ctx.run(run))
