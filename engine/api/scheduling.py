"""Scheduled triggers: `notBefore`/`delay` on `POST …/triggers`, listed and cancelled under `…/scheduled`.

Scheduling an instance's trigger is done at once, not queued (like recovery): the `TimerScheduled` event is in the
instance's history, and its firing on the queue, when the `202` is sent, so the listing shows it at once and a
cancel right after it works. A scheduled broadcast is a delayed command on the queue: it cannot be listed.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from engine.api.auth import principal_of
from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.models import ScheduledList, TriggerRequest, _Schedulable
from engine.api.problems import ApiProblem
from engine.domain import SchedulingRefused, TimerNotFound, Trigger, parse_duration, parse_time, timestamp
from engine.domain.timers import MAX_HORIZON
from engine.service.commands import Broadcast, to_message
from engine.service.results import Result

__all__ = ["add_routes", "due_of", "schedule_broadcast", "schedule_trigger"]


def due_of(body: _Schedulable, now: datetime) -> datetime | None:
    """When a request's trigger is to be sent: None for at once (no `notBefore` or `delay`)."""
    if body.not_before is not None:
        due = parse_time(body.not_before)
    elif body.delay is not None:
        due = now + parse_duration(body.delay)
    else:
        return None
    if due - now > MAX_HORIZON:
        field = "notBefore" if body.not_before is not None else "delay"
        raise ApiProblem(422, "Invalid request", f"`{field}` is more than {MAX_HORIZON.days} days away",
                         slug="invalid-request", errors=[{"path": f"body.{field}",
                                                          "message": f"at most {MAX_HORIZON.days} days away"}])
    return due


def _who(request: Request) -> str:
    return str(principal_of(request.scope))


def _location(tenant: str, instance_id: str, trigger_id: str | None = None) -> str:
    path = f"/tenants/{quote(tenant, safe='')}/instances/{quote(instance_id, safe='')}/scheduled"
    return path if trigger_id is None else f"{path}/{quote(trigger_id, safe='')}"


async def schedule_trigger(ctx: ApiContext, request: Request, tenant: str, instance_id: str, body: TriggerRequest,
                           trigger: Trigger, due: datetime) -> JSONResponse:
    def schedule() -> Result:
        result = ctx.engine.processor.schedule_trigger(tenant, instance_id, trigger, due=due, by=_who(request))
        if result.duplicate and ctx.engine.events.load(tenant, instance_id).timer(trigger.id, None) is None \
                and ctx.engine.events.find_trigger(tenant, instance_id, trigger.id) is None:
            # Scheduled once under this id, then cancelled: sending it again must not look like it is scheduled.
            raise SchedulingRefused(tenant, instance_id, f"trigger {trigger.id!r} was scheduled and cancelled; "
                                                         "schedule it again under another id")
        return result

    result = await ctx.run(schedule)
    due_at = result.commit.events[0].data.get("dueAt")
    return JSONResponse({"triggerId": trigger.id, "notBefore": due_at, "scheduled": True}, status_code=202,
                        headers={"Location": _location(tenant, instance_id, trigger.id)})


async def schedule_broadcast(ctx: ApiContext, tenant: str, trigger: Trigger, due: datetime) -> JSONResponse:
    scheduler = ctx.engine.scheduler
    assert scheduler is not None
    await ctx.run(lambda: scheduler.schedule(tenant, to_message(Broadcast(tenant, trigger)), due=due,
                                             key=trigger.id, instance_id="~broadcast"))
    return JSONResponse({"triggerId": trigger.id, "subjects": list(trigger.subjects),
                         "notBefore": timestamp(due)}, status_code=202,
                        headers={"Location": f"/tenants/{quote(tenant, safe='')}/instances"})


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["instances"]
    events, processor = ctx.engine.events, ctx.engine.processor

    @api.get("/tenants/{tenant}/instances/{instance_id}/scheduled", tags=tags, response_model=ScheduledList,
             responses=problem_responses(*AUTH_PROBLEMS),
             summary="The instance's pending timers: scheduled triggers and its state's timeouts, earliest first")
    async def list_scheduled(tenant: str, instance_id: str,
                             kind: Annotated[str | None, Query(pattern="^(trigger|timeout)$")] = None) -> JSONResponse:
        instance = await ctx.run(events.load, tenant, instance_id)
        timers = sorted((t for t in instance.timers if kind is None or t.kind == kind), key=lambda t: t.due_at)
        return JSONResponse({"items": [timer.to_dict() for timer in timers]})

    @api.delete("/tenants/{tenant}/instances/{instance_id}/scheduled/{trigger_id:path}", tags=tags,
                status_code=204, responses=problem_responses(*AUTH_PROBLEMS, 409),
                summary="Cancel a scheduled trigger before it is due (`TimerCancelled`); 404 once it fired")
    async def cancel_scheduled(tenant: str, instance_id: str, trigger_id: str, request: Request,
                               reason: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
        by = _who(request)
        await ctx.run(lambda: processor.cancel_scheduled(tenant, instance_id, trigger_id, by=by,
                                                         reason=reason or f"cancelled by {by}",
                                                         command_id=f"{trigger_id}:cancelled"))
        return Response(status_code=204)

    @api.delete("/tenants/{tenant}/instances/{instance_id}/scheduled", tags=tags,
                responses=problem_responses(*AUTH_PROBLEMS, 409),
                summary="Cancel every scheduled trigger of the instance; answers which were cancelled")
    async def cancel_all(tenant: str, instance_id: str, request: Request,
                         reason: Annotated[str | None, Query(max_length=2000)] = None) -> JSONResponse:
        by = _who(request)

        def cancel() -> list[str]:
            instance = events.load(tenant, instance_id)
            cancelled = []
            for timer in instance.timers:
                if timer.kind != "trigger":
                    continue
                try:
                    processor.cancel_scheduled(tenant, instance_id, timer.id, by=by,
                                               reason=reason or f"cancelled by {by}",
                                               command_id=f"{timer.id}:cancelled")
                except TimerNotFound:  # it fired meanwhile
                    continue
                cancelled.append(timer.id)
            return cancelled

        return JSONResponse({"cancelled": await ctx.run(cancel)})

