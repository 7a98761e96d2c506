"""The dashboard as a webhook subscriber (FastAPI).

    OPTIONS /events   the CloudEvents webhook handshake: consents for the origins it trusts
    POST    /events   one CloudEvent, structured or binary mode; checks `X-Waymark-Signature` when it has a secret
    GET     /counts   expense claims per state and per status

Run it:

    DASHBOARD_SECRET=… python -m samples.dashboard.app        # listens on 127.0.0.1:8090 (PORT to change)

and subscribe it (the secret is the same):

    curl -X PUT http://127.0.0.1:8080/tenants/demo/subscriptions/dashboard -H "Authorization: Bearer $KEY" \\
         -H 'Content-Type: application/json' \\
         -d '{"endpoint": "http://127.0.0.1:8090/events", "secret": "…", "mode": "binary"}'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from samples.dashboard.counts import ClaimCounts

SIGNATURE_HEADER = "x-waymark-signature"


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """HMAC-SHA256 of the raw body under the shared secret, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header.strip())


def create_dashboard(*, secret: str | None = None, workflow_id: str = "expense-claim",
                     allowed_origins: Iterable[str] = ("*",)) -> FastAPI:
    app = FastAPI(title="Expense claims dashboard")
    counts = ClaimCounts(workflow_id)
    origins = set(allowed_origins)
    app.state.counts = counts

    @app.options("/events")
    async def handshake(request: Request) -> Response:
        origin = request.headers.get("webhook-request-origin")
        if origin is None or ("*" not in origins and origin not in origins):
            return Response(status_code=403)
        return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*",
                                                  "Allow": "POST, OPTIONS"})

    @app.post("/events")
    async def receive(request: Request) -> Response:
        body = await request.body()
        if secret is not None and not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            event = from_http(HTTPMessage({k.lower(): v for k, v in request.headers.items()}, body), JSONFormat())
        except Exception:  # a malformed event will not get better by being sent again: say so, do not retry
            return JSONResponse({"error": "not a CloudEvent"}, status_code=400)
        return JSONResponse({"changed": counts.apply(event)})

    @app.get("/counts")
    async def get_counts() -> JSONResponse:
        return JSONResponse(counts.snapshot())

    return app


if __name__ == "__main__":  # pragma: no cover
    import uvicorn

    uvicorn.run(create_dashboard(secret=os.environ.get("DASHBOARD_SECRET")), host="127.0.0.1",
                port=int(os.environ.get("PORT", "8090")))
