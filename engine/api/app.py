"""`create_app`: the FastAPI application of one engine. Hosts (`waymark serve`, `function_app.py`) build one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from engine import __version__
from engine.api import (
    front,
    health,
    instances,
    migration,
    parked,
    problems,
    recovery,
    scheduling,
    schemas,
    workflows,
)
from engine.api import tenants as tenant_routes
from engine.api.access import PUBLIC_PATHS
from engine.api.auth import Authenticator, AuthMiddleware
from engine.api.context import ApiContext, ApiSettings
from engine.api.health import ReadinessCheck
from engine.api.limits import BodyLimitMiddleware
from engine.api.models import BroadcastRequest, CreateInstanceRequest, TriggerRequest
from engine.api.ratelimit import RateLimiter, RateLimits
from engine.schemas import definition_schema
from engine.service.engine import Engine
from engine.tenants import TenantRegistry

DESCRIPTION = """\
An event-sourced workflow engine. Every tenant route needs `Authorization: Bearer <key>` (the tenant's key,
or the admin key). Commands (create, trigger) are accepted with `202` and queued; send `Prefer: wait=N`
(N ≤ 30) to get the result instead once it is ready. Every error is `application/problem+json` (RFC 9457).
"""


def create_app(engine: Engine, tenants: TenantRegistry, settings: ApiSettings, *,
               authenticator: Authenticator | None = None, routers: Sequence[APIRouter] = (),
               readiness: Mapping[str, ReadinessCheck] | None = None) -> FastAPI:
    """The API of one engine. `routers` adds more routes (the change feed's `feed_router`): the
    AuthMiddleware covers them like every route (engine/api/access.py), and their errors are problems too.
    Add routers here, not with `include_router` on the app: the auth cannot see into an included router, so it
    lets only the admin key through to one. `readiness`: more checks for `GET /readyz` (engine/api/health.py)."""
    app = FastAPI(title="Waymark", version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None)
    auth = authenticator or Authenticator(tenants, admin_key=settings.admin_key, ttl=settings.auth_cache_seconds,
                                          negative_ttl=settings.auth_negative_cache_seconds)
    limits = RateLimits(RateLimiter(settings.rate_limit_per_key, settings.rate_limit_burst_per_key),
                        RateLimiter(settings.rate_limit_per_address, settings.rate_limit_burst_per_address),
                        hops=settings.client_address_hops)
    ctx = ApiContext(engine=engine, tenants=tenants, settings=settings, auth=auth, limits=limits)
    problems.install(app)
    # Routes go on the app itself, not through include_router: FastAPI matches an included router's routes
    # through a wrapper that costs more per request than accepting a trigger does. The hot routes come first.
    instances.add_routes(app, ctx)
    workflows.add_routes(app, ctx)
    tenant_routes.add_routes(app, ctx)
    health.add_routes(app, ctx, readiness=readiness)
    recovery.add_routes(app, ctx)
    parked.add_routes(app, ctx)
    scheduling.add_routes(app, ctx)
    migration.add_routes(app, ctx)
    schemas.add_routes(app, ctx)
    from engine.ui import MOUNT as DASHBOARD  # here: the dashboard itself uses parts of engine.api
    from engine.ui import add_routes as add_dashboard

    add_dashboard(app, ctx)  # the operator dashboard at /ui (engine/ui)
    front.add_routes(app, dashboard=DASHBOARD)  # / → /ui/, and /docs and /redoc with their assets served from here
    for router in routers:  # their routes go on the app itself too (after the hot ones), where the auth sees them
        app.router.routes.extend(router.routes)
    # The last middleware added runs first: who is calling is settled before a byte of the body is read.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, authenticator=auth, routes=app.router.routes, limits=limits)
    app.state.waymark = ctx

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {})
            for model in (CreateInstanceRequest, TriggerRequest, BroadcastRequest, recovery.RecoverRequest,
                          recovery.TerminateRequest, recovery.BulkRecoverRequest, recovery.BulkTerminateRequest,
                          parked.BulkParkedRequest, migration.MigrateRequest, migration.BulkMigrateRequest):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                # Models they nest (`Filter`) come as `$defs`: in OpenAPI they are components beside them.
                for name, nested in model_schema.pop("$defs", {}).items():
                    components.setdefault("schemas", {}).setdefault(name, nested)
                components.setdefault("schemas", {})[model.__name__] = model_schema
            schemas.embed_definition_schema(components, definition_schema(engine.catalog.registry))
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A tenant key (for its own routes) or the admin key (every route)"}}
            problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path not in PUBLIC_PATHS:
                        operation["security"] = [{"bearer": []}]
                        # Any route that needs a key may answer 429 (engine/api/ratelimit.py).
                        operation.setdefault("responses", {}).setdefault("429", {
                            "description": "Too many requests from this key, or failed authentications from this "
                                           "client address (`Retry-After`)", "content": problem})
                    # Every JSON body is refused with 415 when sent as another media type (problems.py).
                    if "application/json" in operation.get("requestBody", {}).get("content", {}):
                        operation.setdefault("responses", {}).setdefault("415", {
                            "description": "The body is not `application/json`", "content": problem})
                    # FastAPI documents its own 422 shape; ours is a problem, like every error.
                    invalid = operation.get("responses", {}).get("422")
                    if invalid is not None:
                        invalid["content"] = problem
                        invalid["description"] = "Invalid request: every problem in `errors`"
            for name in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
