"""`GET /healthz`: liveness and storage reachability, without a key."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from engine.api.context import ApiContext, problem_responses
from engine.api.models import Health

MAX_TENANTS_PINGED = 20


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["health"]

    def check() -> dict[str, Any]:
        ctx.tenants.ping()
        tenants = ctx.tenants.list()
        for record in tenants[:MAX_TENANTS_PINGED]:
            ctx.engine.events.ping(record.id)
        queue = ctx.engine.queue
        return {"status": "ok", "tenants": len(tenants),
                "queue": {"depth": queue.depth(), "poisoned": len(queue.poisoned(limit=1000))}}

    @api.get("/healthz", tags=tags, response_model=Health, responses=problem_responses(503),
             summary="Liveness and storage reachability: 200, or 503 when the storage or the queue cannot be reached")
    async def healthz() -> JSONResponse:
        return JSONResponse(await ctx.run(check), headers={"Cache-Control": "no-store"})

