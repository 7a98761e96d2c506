"""The Cosmos DB account as every Cosmos adapter reaches it: one long-lived client per account and process
(`cosmos_client`), where a tenant's data lives in it (`CosmosLocation`), and a counter of the requests a client
sends (`RequestCounter`, for the benchmark and the tests).

Used by the event and definition stores (engine/stores/cosmos/, which also creates a tenant's containers), the
tenant registry (engine/tenants/cosmos.py), the change feed's subscription store and the hosts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.cosmos import CosmosClient

from engine.domain.errors import StoreUnavailable

__all__ = ["CosmosLocation", "RequestCounter", "Resolver", "cosmos_client", "default_location", "describe"]

STORE = "cosmos"


@dataclass(frozen=True, slots=True)
class CosmosLocation:
    """Where a tenant's data lives in a Cosmos account."""

    database: str
    events_container: str = "events"
    definitions_container: str = "definitions"


def default_location(tenant: str, *, prefix: str = "waymark-") -> CosmosLocation:
    """`waymark-{tenant}` / `events` / `definitions`: the naming of infra/tenant.bicep when it is given none."""
    return CosmosLocation(f"{prefix}{tenant}")


Resolver = Callable[[str], CosmosLocation]


class RequestCounter(SansIOHTTPPolicy[Any, Any]):
    """Counts the HTTP requests a client sends, each retry too, and sums the request charge (RU) its responses
    carry in `x-ms-request-charge`. An azure-core policy; the Cosmos client takes no `per_call_policies`, so pass it
    as `cosmos_client(request_hook=counter)`: the SDK's `CustomHookPolicy`, which sits after its retry policy, calls
    it for every request that goes on the wire (and its `on_response` for every response)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.by_method: dict[str, int] = {}  # "POST query" for a query, else the HTTP method
        self.charge = 0.0
        self.charged = 0  # responses that carried a request charge
        self.charges: set[float] = set()

    def on_request(self, request: PipelineRequest[Any]) -> None:
        method = str(getattr(request.http_request, "method", "?"))
        headers = getattr(request.http_request, "headers", {}) or {}
        if str(headers.get("x-ms-documentdb-isquery", "")).lower() == "true":
            method += " query"
        with self._lock:
            self.count += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1

    def on_response(self, request: PipelineRequest[Any], response: Any) -> None:
        http = getattr(response, "http_response", None)
        value = (getattr(http, "headers", None) or {}).get("x-ms-request-charge")
        if value is None:
            return
        with contextlib.suppress(ValueError):
            charge = float(value)
            with self._lock:
                self.charge += charge
                self.charged += 1
                self.charges.add(charge)

    def __call__(self, request: PipelineRequest[Any]) -> None:
        self.on_request(request)

    def respond(self, response: Any) -> None:
        """The client's `raw_response_hook`."""
        self.on_response(response, response)

    def reset(self) -> int:
        with self._lock:
            count, self.count = self.count, 0
            self.by_method = {}
            self.charge, self.charged, self.charges = 0.0, 0, set()
        return count


def cosmos_client(endpoint: str, *, key: str | None = None, credential: Any = None, verify: bool = True,
                  request_hook: Callable[[Any], None] | None = None, connection_timeout: float = 10.0,
                  read_timeout: float = 30.0, retry_connect: int = 3, throttle_retries: int = 9,
                  throttle_wait_seconds: int = 30, **options: Any) -> CosmosClient:
    """One long-lived client per account and process, with a key or a `TokenCredential` (`DefaultAzureCredential`).

    Throttling (429) is retried by the SDK's throttle policy, honouring the server's `x-ms-retry-after-ms`, up to
    `throttle_retries` times and `throttle_wait_seconds` in all (the SDK's defaults); what is still throttled after
    that is `StoreUnavailable`. `verify=False` only against a local cosmosdb-server (self-signed certificate).
    Constructing a client reads the account (one request): an unreachable endpoint raises `StoreUnavailable`.
    """
    if (key is None) == (credential is None):
        raise ValueError("give exactly one of key and credential")
    if request_hook is not None:
        options["raw_request_hook"] = request_hook
        respond = getattr(request_hook, "respond", None)
        if callable(respond):  # a RequestCounter: it sums the request charges too
            options.setdefault("raw_response_hook", respond)
    try:
        return CosmosClient(endpoint, key if key is not None else credential, connection_verify=verify,
                            connection_timeout=connection_timeout, read_timeout=read_timeout,
                            retry_connect=retry_connect, retry_throttle_total=throttle_retries,
                            retry_throttle_backoff_max=throttle_wait_seconds, **options)
    except AzureError as e:
        raise StoreUnavailable(STORE, f"{endpoint}: {describe(e)}") from e


def describe(error: BaseException) -> str:
    """An Azure error in one line: its HTTP status and the first line of its message."""
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", None) or error).strip().splitlines()
    first = message[0] if message else ""
    return f"HTTP {status}: {first}" if status else f"{type(error).__name__}: {first}"
