"""The domain's HTTP port on httpx: what `http` conditions and actions call through."""

from __future__ import annotations

import httpx

from engine.domain import HttpRequest, HttpResponse, HttpTransportError


class HttpxPort:
    """Redirects are not followed: an action calls exactly the URL its definition names."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(follow_redirects=False)

    def send(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.client.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                json=request.json_body if request.json_body is not None else None,
                timeout=request.timeout,
            )
        except httpx.HTTPError as e:
            raise HttpTransportError(f"{type(e).__name__}: {e}") from e
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return HttpResponse(response.status_code, body, dict(response.headers))

    def close(self) -> None:
        self.client.close()
