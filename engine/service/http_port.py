"""The domain's HTTP port: what `http` conditions and actions call through.

Every call goes through the outbound client shared with webhooks (engine/outbound): the destination guard on the
connected address, no redirects, no environment proxies, a total deadline (the action's `timeoutSeconds`, at most
`max_seconds`) and a response body of at most `max_body_bytes`. Failures reach the domain as `HttpTransportError`
naming the destination and the class of failure.
"""

from __future__ import annotations

import orjson

from engine.domain import HttpRequest, HttpResponse, HttpTransportError
from engine.outbound import OutboundClient, OutboundError

MAX_SECONDS = 30.0
MAX_BODY_BYTES = 262_144


class HttpxPort:
    """`outbound` defaults to a client that refuses private destinations."""

    def __init__(self, outbound: OutboundClient | None = None, *, max_seconds: float = MAX_SECONDS,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.outbound = outbound or OutboundClient()
        self.max_seconds = max_seconds
        self.max_body_bytes = max_body_bytes

    def send(self, request: HttpRequest) -> HttpResponse:
        try:
            answer = self.outbound.send(request.method, request.url, headers=dict(request.headers),
                                        json=request.json_body, deadline=min(request.timeout, self.max_seconds),
                                        max_body_bytes=self.max_body_bytes)
        except OutboundError as e:
            raise HttpTransportError(str(e), retryable=e.retryable) from e
        try:
            body = orjson.loads(answer.body) if answer.body else None
        except orjson.JSONDecodeError:
            body = None
        return HttpResponse(answer.status, body, dict(answer.headers))

    def close(self) -> None:
        self.outbound.close()
