"""`GET /healthz` (liveness, anonymous, no I/O) and `GET /readyz` (readiness, admin key).

Liveness answers from memory: a load balancer or a probe may call it as often as it likes, and it tells an
anonymous caller nothing (no counts, no storage call). Readiness runs named checks, each a `ReadinessCheck`:
it returns what it found (JSON) or raises when that part is not ready. `create_app(readiness=...)` adds more
checks (e.g. circuit breakers) beside the default ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.api.context import ApiContext, problem_responses
from engine.api.models import Health, Readiness
from engine.api.problems import RETRY_AFTER_SECONDS, problem_response
from engine.api.readiness import breakers_check, feed_check
from engine.domain.errors import StoreUnavailable

__all__ = ["DEFAULT_CHECKS", "MAX_TENANTS_PINGED", "ReadinessCheck", "add_routes"]

log = logging.getLogger("waymark.api")

MAX_TENANTS_PINGED = 20
MAX_POISON_COUNTED = 1000

ReadinessCheck = Callable[[ApiContext], Mapping[str, Any]]


def registry_check(ctx: ApiContext) -> Mapping[str, Any]:
    ctx.tenants.ping()
    return {"tenants": len(ctx.tenants.list())}


def storage_check(ctx: ApiContext) -> Mapping[str, Any]:
    """The storage of the first MAX_TENANTS_PINGED tenants (one read each)."""
    # A tenant still `provisioning` (its onboarding has not verified its storage) is not served yet.
    tenants = [record for record in ctx.tenants.list() if not record.config.get("provisioning")][:MAX_TENANTS_PINGED]
    for record in tenants:
        ctx.engine.events.ping(record.id)
    return {"pinged": len(tenants)}


def queue_check(ctx: ApiContext) -> Mapping[str, Any]:
    queue = ctx.engine.queue
    return {"depth": queue.depth(), "poisoned": len(queue.poisoned(limit=MAX_POISON_COUNTED))}


DEFAULT_CHECKS: Mapping[str, ReadinessCheck] = {"registry": registry_check, "storage": storage_check,
                                                "queue": queue_check, "breakers": breakers_check,
                                                "feed": feed_check}


def run_checks(ctx: ApiContext, checks: Mapping[str, ReadinessCheck]) -> dict[str, dict[str, Any]]:
    """Every check, each on its own: one failing does not hide what the others found."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in checks.items():
        try:
            results[name] = {"status": "ok", **check(ctx)}
        except StoreUnavailable as e:
            # The driver's message names files and hosts: for the log, not the response.
            log.warning("readiness check %s: %s", name, e)
            results[name] = {"status": "unavailable", "detail": f"the {e.store} cannot be reached"}
        except Exception as e:
            log.error("readiness check %s failed", name, exc_info=e)
            results[name] = {"status": "failed", "detail": f"{type(e).__name__} (see the server log)"}
    return results


def add_routes(api: FastAPI, ctx: ApiContext, *, readiness: Mapping[str, ReadinessCheck] | None = None) -> None:
    tags: list[str | Enum] = ["health"]
    checks = {**DEFAULT_CHECKS, **(readiness or {})}
    alive = {"status": "ok"}

    @api.get("/healthz", tags=tags, response_model=Health,
             summary="Liveness: 200 while the process serves requests. No key, no storage call, no counts")
    async def healthz() -> JSONResponse:
        return JSONResponse(alive, headers={"Cache-Control": "no-store"})

    @api.get("/readyz", tags=tags, response_model=Readiness, responses=problem_responses(401, 403, 503),
             summary="Readiness (admin key): the tenant registry, tenants' storage and the queue, with counts; "
                     "503 when one is not ready")
    async def readyz(request: Request) -> JSONResponse:
        results = await ctx.run(run_checks, ctx, checks)
        failing = sorted(name for name, result in results.items() if result["status"] != "ok")
        if failing:
            detail = "Not ready: " + "; ".join(f"{name}: {results[name]['detail']}" for name in failing) + "."
            return problem_response(503, "Not ready", detail, slug="not-ready", instance=request.url.path,
                                    headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
                                    checks=results)
        return JSONResponse({"status": "ok", "checks": results}, headers={"Cache-Control": "no-store"})
