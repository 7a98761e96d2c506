"""What every route of one app shares: the engine, the tenant registry, the settings, the authenticator and the
rate limits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from engine.api.auth import Authenticator
from engine.api.models import ProblemDetails
from engine.api.ratelimit import RateLimits
from engine.service.engine import Engine
from engine.tenants import TenantRegistry

__all__ = ["ApiContext", "ApiSettings", "problem_responses"]


T = TypeVar("T")

# Threads that run the blocking storage calls of requests. A few are enough: SQLite serialises writers, and
# each thread holds its own connections.
STORAGE_THREADS = 8


class ApiSettings(Protocol):
    """What the API reads of its host's settings: the host passes its own (`Settings`, engine/hosting/settings.py,
    has them all), and the API depends on no host."""

    @property
    def admin_key(self) -> str | None: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def max_wait_seconds(self) -> float: ...
    @property
    def auth_cache_seconds(self) -> float: ...
    @property
    def auth_negative_cache_seconds(self) -> float: ...
    @property
    def rate_limit_per_key(self) -> float: ...
    @property
    def rate_limit_burst_per_key(self) -> float: ...
    @property
    def rate_limit_per_address(self) -> float: ...
    @property
    def rate_limit_burst_per_address(self) -> float: ...
    @property
    def client_address_hops(self) -> int: ...


@dataclass(frozen=True)
class ApiContext:
    engine: Engine
    tenants: TenantRegistry
    settings: ApiSettings
    auth: Authenticator
    limits: RateLimits = field(default_factory=RateLimits.off)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(STORAGE_THREADS, thread_name_prefix="waymark-api"))

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking (storage) call off the event loop.

        A plain executor rather than Starlette's `run_in_threadpool`: the hop costs ~20 to 50 µs instead of ~200,
        which is most of what accepting a command costs.
        """
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(call, *args))

    def close(self) -> None:
        self.executor.shutdown(wait=True)


_DESCRIPTIONS = {
    400: "Malformed JSON or a malformed request",
    401: "No key, or a key that is not valid (`WWW-Authenticate: Bearer`)",
    403: "The key may not access this tenant or route",
    404: "Tenant, workflow or instance not found",
    409: "Conflict: the resource exists already",
    412: "The trigger's expected version (`If-Match`, `expectedVersion`) did not hold: recorded as rejected",
    413: "Request body over the size limit",
    429: "Too many requests from this key or client address (`Retry-After`)",
    415: "The body is not `application/json`",
    422: "Invalid request or definition: every problem in `errors`",
    503: "Storage or queue unavailable (`Retry-After`)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route may answer with."""
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {status: {"model": ProblemDetails, "description": _DESCRIPTIONS.get(status, "Problem"),
                     "content": {"application/problem+json": {"schema": schema}}}
            for status in statuses}


AUTH_PROBLEMS = (401, 403, 404, 429, 503)
