"""What every page of the dashboard shares: its templates, the session in a sealed cookie, the guard of a page
(logged-in operators only) and of an action (a same-origin POST carrying the session's CSRF token), the tenant's
alerts shown on every page, and the error pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from engine.domain import NotFound, Status, StoreUnavailable, TenantNotFound
from engine.tenants import sealer_of
from engine.ui.security import FormError, read_form, same_origin, tokens_match
from engine.ui.sessions import Session, SessionStore
from engine.ui.timeline import pretty_json
from engine.ui.times import time_element, until, when, with_times

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["ID", "LOGIN_COOKIE", "SESSION_COOKIE", "STATUSES", "Handler", "Pages", "SessionHandler", "operation_id"]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "waymark_session"
LOGIN_COOKIE = "waymark_login"  # the login form's CSRF token (double submit: there is no session yet)
STATUSES = [status.value for status in Status]
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

Handler = Callable[[Request], Awaitable[Response]]
SessionHandler = Callable[[Request, Session], Awaitable[Response]]
ActionHandler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def operation_id() -> str:
    """An id for an operation a page offers, so that sending its form twice does it once."""
    return secrets.token_hex(16)


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pretty"] = pretty_json
    env.filters["when"] = when
    env.filters["until"] = until
    env.filters["time"] = time_element
    env.filters["times"] = with_times
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.globals["STATUSES"] = STATUSES
    return env


class Pages:
    """The dashboard's plumbing, shared by its pages (overview.py, instances.py, instance.py, feed.py, login.py)."""

    def __init__(self, ctx: ApiContext, *, sessions: SessionStore | None = None) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        # Sealed under the server secret: every process of the host opens what another sealed.
        self.store = sessions or SessionStore(sealer=sealer_of(ctx.tenants, "dashboard sessions"))
        self.templates = templates()

    # ------------------------------------------------------------------------------------------ responses

    @staticmethod
    def prefix_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(self, request: Request, name: str, *, session: Session | None, code: int = 200,
               **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            prefix=self.prefix_of(request), session=session, flashes=session.take_flashes() if session else [],
            alerts=getattr(request.state, "alerts", []), **values)
        return HTMLResponse(html, status_code=code)

    def error_page(self, request: Request, session: Session | None, status: int, title: str,
                   detail: str) -> HTMLResponse:
        return self.render(request, "error.html", session=session, code=status, title=title, detail=detail)

    @staticmethod
    def redirect(location: str) -> RedirectResponse:
        return RedirectResponse(location, status_code=303)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own errors (no such page, a method a page does not take), as pages of the dashboard."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = "There is no such page in the dashboard." if status == 404 else str(getattr(exc, "detail", exc))
        return self.error_page(request, self.store.get(request.cookies.get(SESSION_COOKIE)), status,
                               "Not found" if status == 404 else "Request not accepted", detail)

    def alerts(self, tenant: str) -> list[str]:
        """What an operator of the tenant must see on every page: its storage held by the circuit breaker, its
        change-feed subscriptions paused (what they are owed is kept) or gone."""
        found = []
        breaker = self.engine.breakers.states().get(tenant)
        if breaker is not None:
            found.append(f"This tenant's {breaker['store']} is unreachable (since {breaker['since']}): its commands "
                         f"are held, not lost, and are applied once it answers (next try in "
                         f"{breaker['retryInSeconds']:g} s).")
        attention = self.engine.feed_attention
        for paused in attention(tenant) if attention is not None else []:
            when = (f"it resumes by itself at {paused['resumeAt']}" if paused["resumeAt"]
                    else "it waits to be resumed" if paused["status"] == "paused" else "the endpoint answered 410")
            found.append(f"Change-feed subscription {paused['name']} ({paused['kind']}) is {paused['status']}: "
                         f"{paused['lastError'] or 'paused by hand'}. Nothing is lost; {when}.")
        return found

    # ------------------------------------------------------------------------------------------ sessions

    @staticmethod
    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def set_cookie(self, request: Request, response: Response, name: str, value: str, *, path: str,
                   max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, secure=self.secure(request), httponly=True,
                            samesite="strict")

    def to_login(self, request: Request) -> RedirectResponse:
        prefix = self.prefix_of(request)
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.redirect(f"{prefix}/login?{urlencode({'next': wanted})}")

    def safe_next(self, request: Request, wanted: str | None) -> str:
        """Where to go after login: a page of the dashboard, never another site."""
        prefix = self.prefix_of(request)
        if (wanted and wanted.startswith(f"{prefix}/") and not wanted.startswith("//") and "\\" not in wanted
                and not wanted.startswith(f"{prefix}/login")):
            return wanted
        return f"{prefix}/"

    async def current(self, request: Request) -> Session | None:
        """The request's live session whose key still works (a rotated key or a removed tenant ends it)."""
        ctx = self.ctx
        session = self.store.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        principal = ctx.auth.cached(session.key)
        if principal is None:
            principal = await ctx.run(ctx.auth.lookup, session.key)
        valid = principal is not None and principal.admin == session.admin and (
            session.admin or principal.tenant == session.tenant)
        if valid and session.admin and not ctx.auth.tenant_known(session.tenant):
            try:
                await ctx.run(ctx.auth.check_tenant, session.tenant)
            except TenantNotFound:
                valid = False
        if not valid:
            self.store.end(session)
            return None
        return session

    def kept(self, request: Request, response: Response, session: Session) -> Response:
        """The response with the session sealed again into its cookie (when it was used, its flashes), or the
        cookie deleted when the session ended."""
        if session.ended:
            response.delete_cookie(SESSION_COOKIE, path=self.prefix_of(request) or "/", secure=self.secure(request),
                                   httponly=True, samesite="strict")
        else:
            self.set_cookie(request, response, SESSION_COOKIE, self.store.seal(session),
                            path=self.prefix_of(request) or "/")
        return response

    # ------------------------------------------------------------------------------------------ guards

    def page(self, handler: SessionHandler) -> Handler:
        """A page for logged-in operators; anyone else is sent to the login page (and back after it)."""
        async def run(request: Request) -> Response:
            session = await self.current(request)
            if session is None:
                return self.to_login(request)
            try:
                try:
                    request.state.alerts = await self.ctx.run(self.alerts, session.tenant)
                except StoreUnavailable:
                    request.state.alerts = ["This tenant's change-feed state cannot be read right now."]
                response = await handler(request, session)
            except NotFound as e:
                response = self.error_page(request, session, 404, "Not found", str(e))
            except StoreUnavailable as e:
                response = self.error_page(request, session, 503, "Storage unavailable", str(e))
            return self.kept(request, response, session)
        return run

    def action(self, handler: ActionHandler) -> Handler:
        """A POST from a page of the dashboard: same origin, and the session's CSRF token in the form."""
        async def run(request: Request) -> Response:
            session = await self.current(request)
            if session is None:
                return self.to_login(request)
            return self.kept(request, await self._checked(request, session, handler), session)
        return run

    async def _checked(self, request: Request, session: Session, handler: ActionHandler) -> Response:
        if not same_origin(request.headers, host=request.headers.get("host", "")):
            return self.error_page(request, session, 403, "Forbidden",
                                   "This form was sent from another site; nothing was done.")
        try:
            form = await read_form(request)
        except FormError as e:
            return self.error_page(request, session, 400, "Bad request", str(e))
        if not tokens_match(form.get("csrf"), session.csrf):
            return self.error_page(request, session, 403, "Forbidden",
                                   "The form's security token is missing or out of date; nothing was done. Reload "
                                   "the page and try again.")
        try:
            return await handler(request, session, form)
        except NotFound as e:
            return self.error_page(request, session, 404, "Not found", str(e))
        except StoreUnavailable as e:
            return self.error_page(request, session, 503, "Storage unavailable", str(e))
