"""The dashboard's login and logout: a tenant key (or the admin key and a tenant id) becomes a session; failed
logins count against the client address's rate limit (429 when spent).

    GET  /ui/login   POST /ui/login
    POST /ui/logout
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from engine.api.problems import problem_for
from engine.api.ratelimit import TooManyRequests
from engine.domain import TenantNotFound
from engine.ui.pages import LOGIN_COOKIE, SESSION_COOKIE, Pages
from engine.ui.security import FormError, read_form, same_origin, tokens_match
from engine.ui.sessions import Session

__all__ = ["LoginPages"]

log = logging.getLogger("waymark.ui")

MAX_OPERATOR = 100

Again = Callable[[str, int], Response]  # the login form again, with an error and its status


class LoginPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.ctx = pages.ctx

    def login_page(self, request: Request, *, error: str | None = None, status: int = 200, tenant: str = "",
                   operator: str = "", wanted: str | None = None) -> Response:
        pages = self.pages
        token = secrets.token_urlsafe(32)
        response = pages.render(request, "login.html", session=None, code=status, error=error, csrf=token,
                                tenant=tenant, operator=operator, next=pages.safe_next(request, wanted),
                                bye=request.query_params.get("bye") == "1")
        pages.set_cookie(request, response, LOGIN_COOKIE, token, path=f"{pages.prefix_of(request)}/login",
                         max_age=3600)
        return response

    async def show(self, request: Request) -> Response:
        if await self.pages.current(request) is not None:
            return self.pages.redirect(self.pages.safe_next(request, request.query_params.get("next")))
        return self.login_page(request, wanted=request.query_params.get("next"))

    async def log_in(self, request: Request) -> Response:
        pages = self.pages
        if not same_origin(request.headers, host=request.headers.get("host", "")):
            return pages.error_page(request, None, 403, "Forbidden", "This form was sent from another site.")
        try:
            form = await read_form(request)
        except FormError as e:
            return pages.error_page(request, None, 400, "Bad request", str(e))
        if not tokens_match(form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")):
            return self.login_page(request, status=403, error="The login form had expired. Please log in again.",
                                   wanted=form.get("next"))
        key = form.get("key", "").strip()
        tenant = form.get("tenant", "").strip()
        operator = " ".join(form.get("name", "").split())[:MAX_OPERATOR]

        def again(error: str, status: int) -> Response:
            return self.login_page(request, error=error, status=status, tenant=tenant, operator=operator,
                                   wanted=form.get("next"))

        if not key:
            return again("Enter a tenant key (or the admin key and a tenant id).", 400)
        return await self._authenticate(request, key, tenant, operator, form.get("next"), again)

    async def _authenticate(self, request: Request, key: str, tenant: str, operator: str, wanted: str | None,
                            again: Again) -> Response:
        """The session of a key that works for the tenant, or the form again (a failed try counts against the
        client's address, like a wrong API key)."""
        ctx = self.ctx
        address = ctx.limits.address(request.scope)

        def failed(error: str, status: int) -> Response:
            ctx.limits.failed(address)
            return again(error, status)

        try:
            ctx.limits.check_address(address)
        except TooManyRequests as e:
            return self.too_many(request, e, again)
        secret = key.encode("utf-8")
        principal = await ctx.run(ctx.auth.lookup, secret)
        if principal is None:
            return failed("That key is not valid.", 401)
        if principal.admin:
            if not tenant:
                return again("With the admin key, also enter the id of the tenant to look at.", 400)
            try:
                await ctx.run(ctx.auth.check_tenant, tenant)
            except TenantNotFound:
                return failed(f"There is no tenant {tenant!r}.", 404)
        else:
            assert principal.tenant is not None
            if tenant and tenant != principal.tenant:
                return failed(f"That key is not a key of tenant {tenant!r}.", 403)
            tenant = principal.tenant
        session = self.pages.store.create(tenant=tenant, key=secret, admin=principal.admin, operator=operator)
        log.info("dashboard login: %s for tenant %r", principal, tenant)
        return self._logged_in(request, session, wanted)

    def _logged_in(self, request: Request, session: Session, wanted: str | None) -> Response:
        pages = self.pages
        response = pages.redirect(pages.safe_next(request, wanted))
        pages.set_cookie(request, response, SESSION_COOKIE, pages.store.seal(session),
                         path=pages.prefix_of(request) or "/")
        response.delete_cookie(LOGIN_COOKIE, path=f"{pages.prefix_of(request)}/login", secure=pages.secure(request),
                               httponly=True, samesite="strict")
        return response

    @staticmethod
    def too_many(request: Request, problem: TooManyRequests, again: Again) -> Response:
        """429 with Retry-After: the login page again for a browser, a problem for any other client."""
        if "text/html" in request.headers.get("accept", ""):
            response = again(str(problem.detail), 429)
        else:
            response = problem_for(problem, request.url.path)
        response.headers["Retry-After"] = (problem.headers or {}).get("Retry-After", "1")
        return response

    async def log_out(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        self.pages.store.end(session)  # the action's wrapper deletes the cookie
        return self.pages.redirect(f"{self.pages.prefix_of(request)}/login?bye=1")
