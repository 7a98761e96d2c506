"""Onboarding: `POST /tenants` (admin key), `GET /tenants/{tenant}`, verifying its storage, and key rotation.

Onboarding is resumable. `POST /tenants` records the tenant as `provisioning` (its configuration carries
`"provisioning": true`), verifies that its storage answers (events, definitions, parked commands: created where the
host may create them, else they must exist, as infra/tenant.bicep makes them), and only then issues the key and makes
the record active. A storage that does not answer yet is a 503 and the record stays `provisioning`: the same
`POST /tenants` again verifies again and finishes — one tenant, and one key, the one shown. An active tenant is 409.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from engine.api.context import AUTH_PROBLEMS, ApiContext, problem_responses
from engine.api.models import TenantCreated, TenantRequest, TenantView
from engine.domain import NotFound, StoreUnavailable
from engine.tenants import TenantAlreadyExists, TenantRecord
from engine.tenants.config import PROVISIONING, parse_tenant_config


def add_routes(api: FastAPI, ctx: ApiContext) -> None:
    tags: list[str | Enum] = ["tenants"]

    def forget(tenant: str) -> None:
        """Drop what this process cached of the tenant's configuration (it just changed)."""
        router = getattr(ctx.engine.events, "router", None)
        if router is not None:
            router.forget(tenant)
        ctx.auth.forget(tenant)

    def provisioning(tenant: str, config: dict[str, Any]) -> TenantRecord:
        """The tenant's record in `provisioning`: created, or the one an earlier onboarding left (its configuration
        updated with this request's); TenantAlreadyExists when the tenant is active."""
        try:
            record, _ = ctx.tenants.create(tenant, config={**config, PROVISIONING: True})  # that key is never shown
            return record
        except TenantAlreadyExists:
            record = ctx.tenants.get(tenant)
            if not record.config.get(PROVISIONING):
                raise
            if any(record.config.get(name) != value for name, value in config.items()):
                record = ctx.tenants.update_config(tenant, {**record.config, **config, PROVISIONING: True})
                forget(tenant)
            return record

    def onboard(body: TenantRequest) -> tuple[TenantRecord, str]:
        config = {name: value for name, value in body.config.items() if name != PROVISIONING}
        parse_tenant_config(config)  # InvalidTenantConfig (422) before anything is written
        record = provisioning(body.id, config)
        verify(body.id)  # StoreUnavailable (503): the record stays `provisioning`; the next POST resumes
        key = ctx.tenants.rotate_key(body.id)
        active = {name: value for name, value in record.config.items() if name != PROVISIONING}
        record = ctx.tenants.update_config(body.id, active)
        forget(body.id)
        return record, key

    def verify(tenant: str) -> dict[str, str]:
        """Each part of the tenant's storage answers (created first where this host creates storage), or
        StoreUnavailable naming the first that does not."""
        checks: dict[str, Callable[[], object]] = {
            "events": lambda: ctx.engine.events.ping(tenant),
            "definitions": lambda: ctx.engine.definitions.list(tenant),
            "parked": lambda: ctx.engine.parked_store.list(tenant, limit=1),
        }
        for part, check in checks.items():
            try:
                check()
            except NotFound as e:  # a Cosmos database or container that is not there
                raise StoreUnavailable(f"{part} store", f"tenant {tenant!r}: {e}") from e
        return dict.fromkeys(checks, "ok")

    @api.post("/tenants", tags=tags, status_code=201, response_model=TenantCreated,
              responses=problem_responses(401, 403, 409, 413, 422, 503),
              summary="Onboard a tenant (admin key): verify its storage and return its key, shown once; a 503 leaves "
                      "it `provisioning`, and the same request again finishes it")
    async def create_tenant(body: TenantRequest) -> JSONResponse:
        record, key = await ctx.run(onboard, body)
        return JSONResponse({"id": record.id, "key": key}, status_code=201,
                            headers={"Location": f"/tenants/{record.id}"})

    @api.get("/tenants/{tenant}", tags=tags, response_model=TenantView, responses=problem_responses(*AUTH_PROBLEMS),
             summary="A tenant (its own key or the admin key); never its key")
    async def get_tenant(tenant: str) -> JSONResponse:
        record = await ctx.run(ctx.tenants.get, tenant)
        return JSONResponse(record.to_public())

    @api.post("/tenants/{tenant}/verify", tags=tags, responses=problem_responses(*AUTH_PROBLEMS),
              summary="Check that the tenant's storage answers (events, definitions, parked commands): 200 or 503")
    async def verify_tenant(tenant: str) -> JSONResponse:
        record = await ctx.run(ctx.tenants.get, tenant)
        storage = await ctx.run(verify, tenant)
        return JSONResponse({"id": tenant, "provisioning": bool(record.config.get(PROVISIONING)), "storage": storage})

    @api.post("/tenants/{tenant}/keys", tags=tags, response_model=TenantCreated,
              responses=problem_responses(*AUTH_PROBLEMS),
              summary="Rotate the tenant's key: a new key is returned (shown once) and the old one stops working")
    async def rotate_key(tenant: str) -> JSONResponse:
        key = await ctx.run(ctx.tenants.rotate_key, tenant)
        ctx.auth.forget(tenant)  # other processes trust the old key for at most auth_cache_seconds
        return JSONResponse({"id": tenant, "key": key})

