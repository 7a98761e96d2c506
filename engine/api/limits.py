"""Request limits: the body size (413) and the `Prefer: wait=N` preference (RFC 7240)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.api.problems import ApiProblem, problem_for

__all__ = ["BodyLimitMiddleware", "BodyTooLarge", "preferred_wait"]


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


def preferred_wait(prefer: str | None, maximum: float) -> float | None:
    """Seconds asked for by `Prefer: wait=N` (clamped to [0, maximum]), or None when not asked.

    A preference the server does not understand is ignored, as RFC 7240 says; so is a malformed `wait`.
    """
    if not prefer:
        return None
    for part in prefer.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = float(value.strip().strip('"'))
        except ValueError:
            return None
        if seconds != seconds:  # NaN
            return None
        return max(0.0, min(seconds, maximum))
    return None
