"""Request limits: the body size (413) and the `Prefer: wait=N` preference (RFC 7240)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.problems import ApiProblem, problem_for

__all__ = ["IGNORED_PREFERENCE", "BodyLimitMiddleware", "BodyTooLarge", "WaitPreference", "preferred_wait"]

IGNORED_PREFERENCE = "Waymark-Preference-Ignored"


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "Content too large", f"The request body is larger than the limit of {limit} bytes.",
                         slug="content-too-large", limit=limit)


class BodyLimitMiddleware:
    """Refuses a body over `limit` bytes: at once when `Content-Length` says so, and otherwise (chunked bodies,
    a lying length) as soon as the bytes read so far pass the limit, before they are parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.limit
                except ValueError:
                    too_large = False  # the server rejects a malformed length before we see it
                if too_large:
                    await problem_for(BodyTooLarge(self.limit), scope.get("path"))(scope, receive, send)
                    return
        received = 0
        limit = self.limit

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


@dataclass(frozen=True, slots=True)
class WaitPreference:
    """What `Prefer: wait=N` asked for: `seconds`, clamped to [0, maximum], or None when no wait was asked for or
    the one asked for was not understood; then `ignored` says why."""

    seconds: float | None = None
    ignored: str | None = None

    def headers(self) -> dict[str, str]:
        """`Preference-Applied: wait=N` for a wait honoured; `Waymark-Preference-Ignored` for one that was not."""
        if self.seconds is not None:
            return {"Preference-Applied": f"wait={self.seconds:g}"}
        if self.ignored is not None:
            return {IGNORED_PREFERENCE: self.ignored}
        return {}


def preferred_wait(prefer: str | None, maximum: float) -> WaitPreference:
    """The `wait` preference of a `Prefer` header (RFC 7240).

    A preference the server does not know is ignored, as RFC 7240 says. A `wait` whose value is not a number of
    seconds (`wait=abc`, `wait=5s`, `wait=`) is ignored too, since RFC 7240 has a server ignore a preference it
    cannot comply with rather than fail the request; but it is a client's mistake worth seeing, so the answer
    carries `Waymark-Preference-Ignored` saying so (and no `Preference-Applied`).
    """
    if not prefer:
        return WaitPreference()
    for part in prefer.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = float(value.strip().strip('"'))
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            return WaitPreference(ignored=f"wait: not a number of seconds (0 to {maximum:g}); not waited for")
        return WaitPreference(max(0.0, min(seconds, maximum)))
    return WaitPreference()
