"""Operating faulted instances: recover (retry or reset), terminate, the same in bulk, and poisoned commands.

Recovery is done at once, not queued: an operator wants the outcome, and the processor's load-decide-append
loop settles any race with queued triggers on the same instance. Every recovery and termination has an id (the
client's or generated) that is its idempotency key, and records who did it and why.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, model_validator

from engine.api.auth import principal_of
from engine.api.bodies import body_openapi, read_body
from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.instances import new_id
from engine.api.models import ID, TRIGGER_ID, JsonObject, _Body
from engine.api.problems import ApiProblem
from engine.domain import Instance, RecoveryMode, RecoveryRefused, Status
from engine.domain.errors import InvalidCommand, NotFound
from engine.queues.base import Message
from engine.service.results import Result

MAX_BULK = 1000


class _Operation(_Body):
    id: str | None = Field(None, pattern=TRIGGER_ID, description="Idempotency key of the operation; generated "
                                                                 "when absent.")
    reason: str = Field(min_length=1, max_length=2000, description="Why: recorded in the event.")
    by: str | None = Field(None, min_length=1, max_length=200,
                           description="Who, as the operator wants it recorded (the key's principal is added).")


class RecoverRequest(_Operation):
    model_config = {"json_schema_extra": {"examples": [
        {"mode": "retry", "reason": "payments service is back"},
        {"mode": "reset", "state": "draft", "reason": "claim returned to the claimant", "context": {"amount": 10}},
        {"mode": "reset", "toSequence": 4, "reason": "undo the bad approval"},
    ]}}

    mode: Literal["retry", "reset"]
    state: str | None = Field(None, pattern=ID, description="reset: the state to move to.")
    to_sequence: int | None = Field(None, alias="toSequence", ge=1, le=2**62,
                                    description="reset: move to the state and context as of this event.")
    context: JsonObject | None = Field(None, description="reset: merged into the context (null removes a key).")
    force: bool = Field(False, description="Recover an instance that is not Faulted.")

    @model_validator(mode="after")
    def _fields_fit_the_mode(self) -> RecoverRequest:
        if self.mode == "retry" and (self.state is not None or self.to_sequence is not None or self.context):
            raise ValueError("`state`, `toSequence` and `context` apply to mode `reset` only")
        if self.state is not None and self.to_sequence is not None:
            raise ValueError("give `state` or `toSequence`, not both")
        return self


class TerminateRequest(_Operation):
    model_config = {"json_schema_extra": {"examples": [{"reason": "the customer withdrew the claim"}]}}


class Filter(_Body):
    status: str | None = Field("Faulted", description="Waiting, Complete, Faulted or Terminated (any case).")
    workflow_id: str | None = Field(None, alias="workflowId", pattern=ID)
    state: str | None = Field(None, pattern=ID)
    error_type: str | None = Field(None, alias="errorType", max_length=200, description="Faulted with this error.")


class BulkRecoverRequest(RecoverRequest):
    filter: Filter = Field(default_factory=lambda: Filter.model_validate({}))
    dry_run: bool = Field(False, alias="dryRun", description="List what would be recovered; change nothing.")
    limit: int = Field(100, ge=1, le=MAX_BULK)


class BulkTerminateRequest(TerminateRequest):
    filter: Filter = Field(default_factory=lambda: Filter.model_validate({}))
    dry_run: bool = Field(False, alias="dryRun")
    limit: int = Field(100, ge=1, le=MAX_BULK)


_STATUSES = {status.value.lower(): status.value for status in Status}


def _who(request: Request, by: str | None) -> str:
    principal = str(principal_of(request.scope))
    return f"{by} ({principal})" if by else principal


def _outcome(result: Result) -> dict[str, Any]:
    return {"outcome": str(result.outcome), "operationId": result.trigger_id, "duplicate": result.duplicate,
            "instance": result.instance.to_dict()}


def _message_view(message: Message) -> dict[str, Any]:
    body = message.body
    return {"id": message.id, "dequeueCount": message.dequeue_count, "kind": body.get("kind"),
            "instanceId": body.get("instanceId"), "body": body}


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["operations"]
    events, processor, queue = ctx.engine.events, ctx.engine.processor, ctx.engine.queue

    def recover(tenant: str, instance_id: str, body: RecoverRequest, by: str, operation_id: str) -> Result:
        return processor.recover(tenant, instance_id, mode=RecoveryMode(body.mode), by=by, reason=body.reason,
                                 recovery_id=operation_id, state=body.state, to_sequence=body.to_sequence,
                                 context_patch=body.context, force=body.force)

    @api.post("/tenants/{tenant}/instances/{instance_id}/recover", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 409, 413, 415, 422),
              openapi_extra=body_openapi(RecoverRequest),
              summary="Recover a faulted instance by appending events: retry its faulting trigger, or reset it")
    async def recover_instance(tenant: str, instance_id: str, request: Request) -> JSONResponse:
        body = await read_body(request, RecoverRequest)
        result = await ctx.run(recover, tenant, instance_id, body, _who(request, body.by), body.id or new_id())
        return JSONResponse(_outcome(result))

    @api.post("/tenants/{tenant}/instances/{instance_id}/terminate", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 409, 413, 415, 422),
              openapi_extra=body_openapi(TerminateRequest),
              summary="End an instance for good, with a reason (status Terminated)")
    async def terminate_instance(tenant: str, instance_id: str, request: Request) -> JSONResponse:
        body = await read_body(request, TerminateRequest)
        by, operation_id = _who(request, body.by), body.id or new_id()
        result = await ctx.run(lambda: processor.terminate(tenant, instance_id, by=by, reason=body.reason,
                                                           command_id=operation_id))
        return JSONResponse(_outcome(result))

    def matching(tenant: str, wanted: Filter, limit: int) -> list[Instance]:
        status = None
        if wanted.status is not None:
            status = _STATUSES.get(wanted.status.lower())
            if status is None:
                raise InvalidCommand("filter.status", f"must be one of {', '.join(_STATUSES.values())}")
        found: list[Instance] = []
        continuation = None
        while len(found) < limit:
            page = events.list_instances(tenant, status=status, workflow_id=wanted.workflow_id, state=wanted.state,
                                         limit=min(1000, MAX_BULK), continuation=continuation)
            found += [i for i in page.items
                      if wanted.error_type is None or (i.fault is not None and i.fault.error_type == wanted.error_type)]
            continuation = page.continuation
            if continuation is None:
                break
        return found[:limit]

    def bulk(tenant: str, body: BulkRecoverRequest | BulkTerminateRequest, by: str,
             apply: Any) -> dict[str, Any]:
        targets = matching(tenant, body.filter, body.limit)
        report: dict[str, Any] = {"dryRun": body.dry_run, "matched": [i.id for i in targets], "results": []}
        if body.dry_run:
            return report
        batch = body.id or new_id()
        for instance in targets:
            try:
                result = apply(instance.id, f"{batch}:{instance.id}")
                report["results"].append({"instanceId": instance.id, **_outcome(result)})
            except (RecoveryRefused, InvalidCommand, NotFound) as e:
                report["results"].append({"instanceId": instance.id, "outcome": "refused", "detail": str(e)})
        return report

    @api.post("/tenants/{tenant}/recoveries", tags=tags, responses=problem_responses(400, *AUTH_PROBLEMS, 413, 422),
              openapi_extra=body_openapi(BulkRecoverRequest),
              summary="Recover every instance matching a filter (default: all Faulted); `dryRun` lists them")
    async def recover_many(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BulkRecoverRequest)
        by = _who(request, body.by)
        report = await ctx.run(bulk, tenant, body, by,
                               lambda instance_id, operation_id: recover(tenant, instance_id, body, by, operation_id))
        return JSONResponse(report)

    @api.post("/tenants/{tenant}/terminations", tags=tags,
              responses=problem_responses(400, *AUTH_PROBLEMS, 413, 422),
              openapi_extra=body_openapi(BulkTerminateRequest),
              summary="Terminate every instance matching a filter (default: all Faulted); `dryRun` lists them")
    async def terminate_many(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BulkTerminateRequest)
        by = _who(request, body.by)
        report = await ctx.run(bulk, tenant, body, by, lambda instance_id, operation_id: processor.terminate(
            tenant, instance_id, by=by, reason=body.reason, command_id=operation_id))
        return JSONResponse(report)

    # ------------------------------------------------------------------------------------------ poison

    def poisoned_of(tenant: str) -> list[Message]:
        return [m for m in queue.poisoned(limit=1000) if m.body.get("tenant") == tenant]

    def poisoned_one(tenant: str, message_id: str) -> Message:
        for message in poisoned_of(tenant):
            if message.id == message_id:
                return message
        raise ApiProblem(404, "Not found", f"no poisoned command {message_id!r} in tenant {tenant!r}",
                         slug="not-found")

    @api.get("/tenants/{tenant}/commands/poison", tags=tags, responses=problem_responses(*AUTH_PROBLEMS),
             summary="Commands of this tenant that exhausted their retries (the poison queue)")
    async def list_poisoned(tenant: str) -> JSONResponse:
        messages = await ctx.run(poisoned_of, tenant)
        return JSONResponse({"items": [_message_view(m) for m in messages]})

    @api.post("/tenants/{tenant}/commands/poison/{message_id}/requeue", tags=tags,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Put a poisoned command back on the queue, unchanged (its trigger id keeps it idempotent)")
    async def requeue_poisoned(tenant: str, message_id: str) -> JSONResponse:
        def requeue() -> None:
            queue.requeue_poisoned(poisoned_one(tenant, message_id).id)

        await ctx.run(requeue)
        return JSONResponse({"requeued": message_id}, status_code=202)

    @api.delete("/tenants/{tenant}/commands/poison/{message_id}", tags=tags, status_code=204,
                responses=problem_responses(*AUTH_PROBLEMS),
                summary="Discard a poisoned command for good")
    async def discard_poisoned(tenant: str, message_id: str) -> Response:
        def discard() -> None:
            queue.discard_poisoned(poisoned_one(tenant, message_id).id)

        await ctx.run(discard)
        return Response(status_code=204)
