"""Onboarding: `POST /tenants` (admin key), `GET /tenants/{tenant}`, and key rotation."""

from __future__ import annotations

from enum import Enum

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.models import TenantCreated, TenantRequest, TenantView
from engine.tenant_config import parse_tenant_config
from engine.tenants import TenantRecord


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["tenants"]

    def onboard(body: TenantRequest) -> tuple[TenantRecord, str]:
        parse_tenant_config(body.config)  # InvalidTenantConfig (422) before anything is written
        record, key = ctx.tenants.create(body.id, config=body.config)
        ctx.engine.events.ping(record.id)  # creates the tenant's storage now, not on its first command
        return record, key

    @api.post("/tenants", tags=tags, status_code=201, response_model=TenantCreated,
              responses=problem_responses(401, 403, 409, 413, 422, 503),
              summary="Onboard a tenant (admin key): create its storage and return its key, shown once")
    async def create_tenant(body: TenantRequest) -> JSONResponse:
        record, key = await ctx.run(onboard, body)
        return JSONResponse({"id": record.id, "key": key}, status_code=201,
                            headers={"Location": f"/tenants/{record.id}"})

    @api.get("/tenants/{tenant}", tags=tags, response_model=TenantView, responses=problem_responses(*AUTH_PROBLEMS),
             summary="A tenant (its own key or the admin key); never its key")
    async def get_tenant(tenant: str) -> JSONResponse:
        record = await ctx.run(ctx.tenants.get, tenant)
        return JSONResponse(record.to_public())

    @api.post("/tenants/{tenant}/keys", tags=tags, response_model=TenantCreated,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Rotate the tenant's key: a new key is returned (shown once) and the old one stops working")
    async def rotate_key(tenant: str) -> JSONResponse:
        key = await ctx.run(ctx.tenants.rotate_key, tenant)
        ctx.auth.forget(tenant)  # other processes trust the old key for at most auth_cache_seconds
        return JSONResponse({"id": tenant, "key": key})

