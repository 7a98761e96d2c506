"""Instances and triggers: accept commands (202 + queue), read instances, list them, read their history.

Accepting a command is cheap on purpose: the key was checked from cache, one indexed read says the instance
exists (or the trigger is recorded already), and one queue INSERT hands the command to a worker. The worker
does the rest. `Prefer: wait=N` then polls the event store for the commit of that trigger id.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from enum import Enum
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from engine.api.bodies import body_openapi, read_body
from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.limits import preferred_wait
from engine.api.models import (
    BroadcastAccepted,
    BroadcastRequest,
    CreateAccepted,
    CreateInstanceRequest,
    EventPage,
    InstancePage,
    InstanceView,
    TriggerAccepted,
    TriggerRequest,
    TriggerResult,
)
from engine.api.problems import ApiProblem, problem_response
from engine.api.scheduling import due_of, schedule_broadcast, schedule_trigger
from engine.domain import (
    VERSION_MISMATCH,
    Commit,
    EventType,
    InstanceAlreadyExists,
    InstanceNotFound,
    Status,
    Trigger,
    is_version_mismatch,
)
from engine.service.commands import Broadcast, CreateInstance, SendTrigger, to_message
from engine.service.results import outcome_of
from engine.stores.base import embedded

POLL_SECONDS = 0.015
MAX_SEQUENCE = 2**62  # beyond any real history; keeps a client's number inside a SQLite INTEGER
_STATUSES = {status.value.lower(): status.value for status in Status}

PREFER = ("Prefer", "`wait=N` (N ≤ 30 s): answer with the result once it is ready instead of 202 (RFC 7240); "
                   "a `wait` that is not a number of seconds is ignored, and `Waymark-Preference-Ignored` says so")
IF_MATCH = ("If-Match", '`"<version>"` (the instance\'s ETag): apply the trigger only at that version, else it is '
                        "rejected with reason `version-mismatch` (412 with `Prefer: wait`)")


def _location(tenant: str, instance_id: str) -> str:
    return f"/tenants/{quote(tenant, safe='')}/instances/{quote(instance_id, safe='')}"


def _result(commit: Commit) -> dict[str, Any]:
    return {"outcome": str(outcome_of(commit)), "instance": commit.state.to_dict()}


def _trigger_answer(commit: Commit, headers: dict[str, str], path: str) -> JSONResponse:
    """The result of a processed trigger: 200, or 412 when its expected version did not hold (RFC 9110's answer to
    a failed `If-Match`), with the instance as it was and the version it was at."""
    if not is_version_mismatch(commit.events):
        return JSONResponse(_result(commit), headers=headers)
    [rejected] = [e for e in commit.events if e.type is EventType.TRIGGER_REJECTED]
    return problem_response(
        412, "Version mismatch", str(rejected.data.get("detail") or "the expected version did not hold"),
        slug=VERSION_MISMATCH, instance=path, headers={**headers, "ETag": f'"{commit.state.version}"'},
        triggerId=commit.trigger_id, expectedVersion=rejected.data.get("expectedVersion"),
        version=rejected.data.get("version"), outcome="rejected", sequence=rejected.sequence)


def expected_version(if_match: str | None, in_body: int | None) -> int | None:
    """The version a trigger is conditional on: `If-Match: "<version>"` (one strong tag; `*` sets no condition) or
    the body's `expectedVersion`; both given must agree."""
    if if_match is None or if_match.strip() == "*":
        return in_body
    tag = if_match.strip()
    if not (len(tag) > 2 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit() and int(tag[1:-1]) <= MAX_SEQUENCE):
        raise ApiProblem(400, "Invalid If-Match", f"If-Match must be one version in quotes, as the instance's ETag "
                         f'(e.g. "5"), not {if_match[:40]!r}', slug="invalid-if-match")
    version = int(tag[1:-1])
    if in_body is not None and in_body != version:
        raise ApiProblem(422, "Invalid request", f"If-Match names version {version} and expectedVersion {in_body}",
                         slug="invalid-request", errors=[{"path": "body.expectedVersion",
                                                          "message": "differs from If-Match"}])
    return version


def new_id() -> str:
    """A random 128-bit id (UUID v4 form) from the process's seeded generator: unique, not secret, and without
    the `os.urandom` system call of `uuid4()`, which gives up the GIL on the accept path."""
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


class KnownInstances:
    """Instances this process has seen exist. An instance is never deleted (terminating it keeps it), so once
    seen it exists for good: accepting a trigger for it then needs no read at all. Bounded: when full it is
    emptied and fills again from the store."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._seen: set[tuple[str, str]] = set()

    def has(self, tenant: str, instance_id: str) -> bool:
        return (tenant, instance_id) in self._seen

    def add(self, tenant: str, instance_id: str) -> None:
        if len(self._seen) >= self.limit:
            self._seen.clear()
        self._seen.add((tenant, instance_id))


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["instances"]
    engine = ctx.engine
    events, queue, catalog = engine.events, engine.queue, engine.catalog
    known = KnownInstances()

    async def wait_for(tenant: str, instance_id: str, trigger_id: str, seconds: float) -> Commit | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            commit = await ctx.run(events.find_trigger, tenant, instance_id, trigger_id)
            remaining = deadline - loop.time()
            if commit is not None or remaining <= 0:
                return commit
            await asyncio.sleep(min(POLL_SECONDS, remaining))

    # ------------------------------------------------------------------------------------------ create

    def accept_create(tenant: str, body: CreateInstanceRequest, instance_id: str, trigger_id: str) -> Commit | None:
        """The recorded creation when this exact creation (same trigger id) was done already; else enqueue it."""
        workflow = catalog.get(tenant, body.workflow_id)  # WorkflowNotFound: 404
        if body.id is not None:
            done = events.find_trigger(tenant, instance_id, trigger_id)
            if done is not None:
                return done
            try:
                events.load(tenant, instance_id)
            except InstanceNotFound:
                pass
            else:
                raise InstanceAlreadyExists(tenant, instance_id)
        queue.send(to_message(CreateInstance(tenant, instance_id, workflow.id, trigger_id, context=body.context,
                                             interests=tuple(body.interests), workflow_version=workflow.version)))
        return None

    @api.post("/tenants/{tenant}/instances", tags=tags, status_code=202, response_model=CreateAccepted,
              responses={201: {"model": InstanceView, "description": "Created (with `Prefer: wait`, or when this "
                                                                     "creation was recorded already)"},
                         **problem_responses(400, *AUTH_PROBLEMS, 409, 413, 415, 422)},
              openapi_extra=body_openapi(CreateInstanceRequest, PREFER),
              summary="Create an instance: accepted (202) and queued; `Prefer: wait=N` answers 201 when created")
    async def create_instance(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, CreateInstanceRequest)
        instance_id = body.id or new_id()
        trigger_id = body.trigger_id or new_id()
        location = _location(tenant, instance_id)
        done = await ctx.run(accept_create, tenant, body, instance_id, trigger_id)
        if done is not None:
            return JSONResponse(done.state.to_dict(), status_code=201, headers={"Location": location,
                                                                                 "ETag": f'"{done.state.version}"'})
        wait = preferred_wait(request.headers.get("prefer"), ctx.settings.max_wait_seconds)
        headers = {"Location": location, **wait.headers()}
        if wait.seconds:
            done = await wait_for(tenant, instance_id, trigger_id, wait.seconds)
            if done is not None:
                headers["ETag"] = f'"{done.state.version}"'
                return JSONResponse(done.state.to_dict(), status_code=201, headers=headers)
        return JSONResponse({"instanceId": instance_id, "triggerId": trigger_id}, status_code=202, headers=headers)

    # ------------------------------------------------------------------------------------------ trigger

    def accept_trigger(tenant: str, instance_id: str, trigger: Trigger, client_id: bool) -> Commit | None:
        if client_id:
            done = events.find_trigger(tenant, instance_id, trigger.id)
            if done is not None:
                return done  # idempotent: the first result, and nothing is queued
        if not known.has(tenant, instance_id):
            events.load(tenant, instance_id)  # InstanceNotFound: 404
            known.add(tenant, instance_id)
        queue.send(to_message(SendTrigger(tenant, instance_id, trigger)))
        return None

    @api.post("/tenants/{tenant}/instances/{instance_id}/triggers", tags=tags, status_code=202,
              response_model=TriggerAccepted,
              responses={200: {"model": TriggerResult, "description": "The result (with `Prefer: wait`, or at once "
                                                                      "when this trigger id was recorded already)"},
                         **problem_responses(400, *AUTH_PROBLEMS, 409, 412, 413, 415, 422)},
              openapi_extra=body_openapi(TriggerRequest, PREFER, IF_MATCH, path=("tenant", "instance_id")),
              summary="Send a trigger to one instance: accepted (202) and queued; its id is the idempotency key")
    async def send_trigger(request: Request) -> JSONResponse:
        # The hottest route takes its path parameters from the request, not as FastAPI parameters: solving
        # them costs FastAPI more than the rest of accepting the trigger. They are declared in openapi_extra.
        tenant, instance_id = request.path_params["tenant"], request.path_params["instance_id"]
        body = await read_body(request, TriggerRequest)
        trigger = Trigger(body.topic, body.id or new_id(), body.content, tuple(body.subjects),
                          expected_version(request.headers.get("if-match"), body.expected_version))
        if body.not_before is not None or body.delay is not None:
            if trigger.expected_version is not None:
                raise ApiProblem(422, "Invalid request", "a scheduled trigger (`notBefore`, `delay`) cannot require a "
                                 "version (`If-Match`, `expectedVersion`): the instance may change before it is due",
                                 slug="invalid-request", errors=[{"path": "body.notBefore",
                                                                  "message": "not with If-Match"}])
            due = due_of(body, engine.processor.clock())
            assert due is not None
            return await schedule_trigger(ctx, request, tenant, instance_id, body, trigger, due)
        location = _location(tenant, instance_id)
        if embedded(queue, tenant) and embedded(events, tenant):
            # Inline, not on a thread: the work is two indexed SQLite statements (~0.1 ms), and handing it to a
            # thread and back costs more than that in GIL hand-offs between the threads.
            done = accept_trigger(tenant, instance_id, trigger, body.id is not None)
        else:  # requests over the network (Cosmos, Azure Storage) must not hold up the event loop
            done = await ctx.run(accept_trigger, tenant, instance_id, trigger, body.id is not None)
        if done is not None:
            return _trigger_answer(done, {"Location": location}, request.url.path)
        wait = preferred_wait(request.headers.get("prefer"), ctx.settings.max_wait_seconds)
        headers = {"Location": location, **wait.headers()}
        if wait.seconds:
            done = await wait_for(tenant, instance_id, trigger.id, wait.seconds)
            if done is not None:
                return _trigger_answer(done, headers, request.url.path)
        return JSONResponse({"triggerId": trigger.id}, status_code=202, headers=headers)

    @api.post("/tenants/{tenant}/triggers", tags=tags, status_code=202, response_model=BroadcastAccepted,
              responses=problem_responses(400, *AUTH_PROBLEMS, 413, 415, 422),
              openapi_extra=body_openapi(BroadcastRequest),
              summary="Broadcast a trigger to every instance interested in one of its `subjects` (202, queued)")
    async def broadcast(tenant: str, request: Request) -> JSONResponse:
        body = await read_body(request, BroadcastRequest)
        trigger = Trigger(body.topic, body.id or new_id(), body.content, tuple(body.subjects))
        due = due_of(body, engine.processor.clock())
        if due is not None:
            return await schedule_broadcast(ctx, tenant, trigger, due)
        await ctx.run(queue.send, to_message(Broadcast(tenant, trigger)))
        return JSONResponse({"triggerId": trigger.id, "subjects": list(trigger.subjects)}, status_code=202,
                            headers={"Location": f"/tenants/{quote(tenant, safe='')}/instances"})

    # ------------------------------------------------------------------------------------------ read

    @api.get("/tenants/{tenant}/instances/{instance_id}", tags=tags, response_model=InstanceView,
             responses={304: {"description": "Not modified (`If-None-Match` matched the version)"},
                        **problem_responses(*AUTH_PROBLEMS)},
             summary="The current instance, with `ETag` = its version; `If-None-Match` answers 304")
    async def get_instance(tenant: str, instance_id: str,
                           if_none_match: Annotated[str | None, Header()] = None) -> Response:
        instance = await ctx.run(events.load, tenant, instance_id)
        etag = f'"{instance.version}"'
        if if_none_match is not None:
            tags = _etags(if_none_match)
            if "*" in tags or etag in tags:
                return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(instance.to_dict(), headers={"ETag": etag})

    @api.get("/tenants/{tenant}/instances", tags=tags, response_model=InstancePage,
             responses=problem_responses(*AUTH_PROBLEMS, 422),
             summary="Instances matching every filter given, ordered by id, paged with a continuation token")
    async def list_instances(
            tenant: str,
            status: Annotated[str | None, Query(description="Waiting, Complete, Faulted or Terminated "
                                                            "(any case)")] = None,
            workflow_id: Annotated[str | None, Query(alias="workflowId")] = None,
            state: Annotated[str | None, Query()] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            continuation: Annotated[str | None, Query(max_length=1000)] = None) -> JSONResponse:
        wanted = None
        if status is not None:
            wanted = _STATUSES.get(status.lower())
            if wanted is None:
                allowed = ", ".join(_STATUSES.values())
                raise ApiProblem(422, "Invalid request", f"status {status!r} is not one of {allowed}",
                                 slug="invalid-request", errors=[{"path": "query.status",
                                                                  "message": f"must be one of {allowed}"}])

        def page() -> dict[str, Any]:
            try:
                found = events.list_instances(tenant, status=wanted, workflow_id=workflow_id, state=state,
                                              limit=limit, continuation=continuation)
            except ValueError as e:
                raise ApiProblem(422, "Invalid request", f"continuation token is not valid: {e}",
                                 slug="invalid-request",
                                 errors=[{"path": "query.continuation", "message": "is not a token this server "
                                                                                   "made"}]) from e
            return {"items": [item.to_dict() for item in found.items], "continuation": found.continuation}

        return JSONResponse(await ctx.run(page))

    @api.get("/tenants/{tenant}/instances/{instance_id}/events", tags=tags, response_model=EventPage,
             responses=problem_responses(*AUTH_PROBLEMS, 422),
             summary="The instance's history, in order; `continuation` (or `after`) continues it")
    async def get_events(
            tenant: str, instance_id: str,
            after: Annotated[int, Query(ge=0, le=MAX_SEQUENCE, description="Events with a greater sequence")] = 0,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            continuation: Annotated[str | None, Query(max_length=40, description="From the previous page")] = None,
    ) -> JSONResponse:
        if continuation is not None:
            if not continuation.isdigit() or int(continuation) > MAX_SEQUENCE:
                raise ApiProblem(422, "Invalid request", f"continuation token {continuation!r} is not valid",
                                 slug="invalid-request",
                                 errors=[{"path": "query.continuation", "message": "is not a token this server "
                                                                                   "made"}])
            after = max(after, int(continuation))

        def page() -> dict[str, Any]:
            found = events.read(tenant, instance_id, after=after, limit=limit + 1)
            if not found:
                events.load(tenant, instance_id)  # InstanceNotFound: 404; else the history ends here
            more = len(found) > limit
            items = [{"sequence": e.sequence, "type": str(e.type), "at": e.at, "triggerId": e.trigger_id,
                      "data": dict(e.data)} for e in found[:limit]]
            return {"items": items, "continuation": str(items[-1]["sequence"]) if more else None}

        return JSONResponse(await ctx.run(page))

    # Later issues add here: POST /tenants/{tenant}/instances/{instance_id}/recover and …/terminate.
