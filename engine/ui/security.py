"""What keeps the dashboard's pages safe to open: response headers, same-origin checks, CSRF tokens, form bodies.

- Every response under `/ui` carries a strict Content-Security-Policy (`default-src 'self'`: no inline script or
  style, nothing from elsewhere), `nosniff`, `Referrer-Policy: same-origin` and `X-Frame-Options: DENY`; pages
  are `Cache-Control: no-store` (they show a tenant's data), static assets may be revalidated.
- A state-changing request (every POST) must come from a page of the dashboard: its CSRF token (a hidden form
  field) must equal the session's, compared in constant time, and the browser's `Origin` and `Sec-Fetch-Site`
  headers, when sent, must say the same origin. The session cookie is also `SameSite=Strict`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "FormError", "SecurityHeadersMiddleware", "read_form", "same_origin",
           "tokens_match"]

log = logging.getLogger("waymark.ui")

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 50
FORM_TYPE = "application/x-www-form-urlencoded"

ERROR_PAGE = (b"<!doctype html><html lang=en><meta charset=utf-8><title>Error - Waymark</title>"
              b"<link rel=stylesheet href=\"%s/static/app.css\"><main class=narrow><h1>Something went wrong</h1>"
              b"<p>The dashboard could not show this page. The error is in the server's log.</p>"
              b"<p><a href=\"%s/\">Back to the overview</a></p></main>")


class SecurityHeadersMiddleware:
    """Adds the security headers to every response of the dashboard, and answers an unexpected error with a plain
    HTML page (logged with its traceback) rather than the API's JSON problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(f"{scope.get('root_path', '')}/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["Cache-Control"] = "no-cache" if static else "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("dashboard request %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            prefix = str(scope.get("root_path", "")).encode("utf-8", "replace")
            # root_path is the mount point the server was configured with, not request data; quoted anyway.
            prefix = prefix.replace(b'"', b"%22").replace(b"<", b"%3C")
            body = ERROR_PAGE % (prefix, prefix)
            await send_with_headers({"type": "http.response.start", "status": 500,
                                     "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                                 (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class FormError(ValueError):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """A small `application/x-www-form-urlencoded` body as a dict (the last value of a repeated field)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise FormError(f"the form must be sent as {FORM_TYPE}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("the form is too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormError("the form could not be read") from e
    return {name: values[-1] for name, values in fields.items()}


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a CSRF token (an absent or empty one never matches)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def same_origin(headers: Mapping[str, str], *, host: str) -> bool:
    """False when the browser says the request comes from another site.

    `Sec-Fetch-Site` (sent by current browsers) must be `same-origin` (or `none`: the user typed the address).
    `Origin`, when present, must name this host. Only the host and port are compared, not the scheme: behind a
    proxy that ends TLS the server sees http while the browser says https, and a page of another scheme on the
    very same host is not the cross-site attacker this check is for (SameSite and the token still apply).
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and _without_default_port(netloc) == _without_default_port(host.lower())


def _without_default_port(netloc: str) -> str:
    for suffix in (":80", ":443"):
        if netloc.endswith(suffix):
            return netloc[: -len(suffix)]
    return netloc
