"""The domain's HTTP port: what `http` conditions and actions call through.

Every call goes through the outbound client shared with webhooks (engine/outbound): the destination guard on the
connected address, no redirects, no environment proxies, a total deadline (the action's `timeoutSeconds`, at most
`max_seconds`) and a response body of at most `max_body_bytes`. Failures reach the domain as `HttpTransportError`
naming the destination and the class of failure. A request with an `audience` (`auth: {"type": "managedIdentity"}`)
carries `Authorization: Bearer <token>`, an Entra token of the app's managed identity (`tokens`).
"""

from __future__ import annotations

import orjson

from engine.domain import HttpRequest, HttpResponse, HttpTransportError
from engine.outbound import ManagedIdentityTokens, OutboundClient, OutboundError, TokenUnavailable, destination_of

MAX_SECONDS = 30.0
MAX_BODY_BYTES = 262_144


class HttpxPort:
    """`outbound` defaults to a client that refuses private destinations."""

    def __init__(self, outbound: OutboundClient | None = None, *, max_seconds: float = MAX_SECONDS,
                 max_body_bytes: int = MAX_BODY_BYTES, tokens: ManagedIdentityTokens | None = None) -> None:
        self.outbound = outbound or OutboundClient()
        self.max_seconds = max_seconds
        self.max_body_bytes = max_body_bytes
        self.tokens = tokens

    def send(self, request: HttpRequest) -> HttpResponse:
        headers = dict(request.headers)
        if request.audience is not None:
            headers["Authorization"] = f"Bearer {self._token(request)}"
        try:
            answer = self.outbound.send(request.method, request.url, headers=headers,
                                        json=request.json_body, deadline=min(request.timeout, self.max_seconds),
                                        max_body_bytes=self.max_body_bytes)
        except OutboundError as e:
            raise HttpTransportError(str(e), retryable=e.retryable) from e
        try:
            body = orjson.loads(answer.body) if answer.body else None
        except orjson.JSONDecodeError:
            body = None
        return HttpResponse(answer.status, body, dict(answer.headers))

    def _token(self, request: HttpRequest) -> str:
        assert request.audience is not None
        if self.tokens is None:
            raise HttpTransportError(f"{destination_of(request.url)}: this host has no managed identity to "
                                     "authenticate with", retryable=False)
        try:
            return self.tokens.token(request.audience)
        except TokenUnavailable as e:
            raise HttpTransportError(f"{destination_of(request.url)}: {e}", retryable=e.retryable) from e

    def close(self) -> None:
        self.outbound.close()
        if self.tokens is not None:
            self.tokens.close()
