"""The operator dashboard: server-rendered pages under `/ui`, a session per operator, a little JavaScript.

    GET  /ui/                          overview: instances by workflow and status, recent faults
    GET  /ui/login   POST /ui/login    a tenant key (or the admin key and a tenant id) → a session; failed logins
                                       count against the client address's rate limit (429 when spent)
    POST /ui/logout
    GET  /ui/instances                 filters (workflow, state, status, id search), pages of 25, the most
                                       recently updated first or by id in natural order (engine/ui/listing.py)
    GET  /ui/instances/{id}            state, context, diagram, timeline, explanation, actions
    POST /ui/instances/{id}/recover    retry or reset, with a reason: a confirm page first, unless confirmed
    POST /ui/instances/{id}/terminate  the same for terminating
    GET  /ui/parked                    parked commands: filters, pages of 25, requeue or discard (engine/ui/parked.py)
    POST /ui/parked/act                requeue or discard one, or every match: a confirm page first
    GET  /ui/feed                      the change feed, live (app.js polls the next route every 2 s)
    GET  /ui/feed/events?after=N       the pull feed, summarised, for that page (JSON, session-authenticated)
    GET  /ui/static/...                the stylesheet and the script (nothing comes from anywhere else)

The pages call the same engine the API calls (the event store, the definition catalog, the processor) rather
than the API over HTTP: the session stands in for the bearer key, and the tenant is the session's, never a
path parameter, so a session can only ever see its own tenant.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from engine.api.problems import problem_for
from engine.api.ratelimit import TooManyRequests
from engine.domain import (
    InvalidCommand,
    NotFound,
    RecoveryMode,
    RecoveryRefused,
    Status,
    StoreUnavailable,
    TenantNotFound,
    WaymarkError,
    WorkflowDefinition,
    parse_time,
)
from engine.feed.cloudevents import TYPE_PREFIX, CloudEventMapper, to_batch
from engine.service.explain import explain
from engine.tenants import sealer_of
from engine.ui.diagram import layout, path_of
from engine.ui.listing import by_natural_id, exactly, recently_updated, searched
from engine.ui.parked import ParkedPages
from engine.ui.security import FormError, SecurityHeadersMiddleware, read_form, same_origin, tokens_match
from engine.ui.sessions import Session, SessionStore
from engine.ui.timeline import entries, pretty_json

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["SESSION_COOKIE", "create_dashboard"]

log = logging.getLogger("waymark.ui")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "waymark_session"
LOGIN_COOKIE = "waymark_login"  # the login form's CSRF token (double submit: there is no session yet)
PAGE_SIZE = 25
TIMELINE_PAGE = 200  # events on an instance page
FEED_PAGE = 100
FEED_BACKLOG = 25  # commits the live page starts with
MAX_SCANNED = 20_000  # instances the overview counts before it says "at least"
RECENT_FAULTS = 10
RECENTLY_UPDATED = 10  # instances in the overview's "Recently updated"
PATH_EVENTS = 2000  # events read to draw the path an instance took (its latest ones, for a very long history)
MAX_SEARCH = 128
SORTS = ("updated", "id")
MAX_REASON = 2000
MAX_OPERATOR = 100
MAX_POSITION = 2**62
STATUSES = [status.value for status in Status]
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
OPERATION_ID = re.compile(r"^[!-~]{1,200}$")

Handler = Callable[[Request], Awaitable[Response]]
SessionHandler = Callable[[Request, Session], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What the instance list was asked for: filters, an id search, the order, and where the page starts."""

    workflow: str | None = None
    state: str | None = None
    status: str | None = None
    search: str = ""
    sort: str = "updated"
    page: int = 0  # sort=id: the page number
    before: int | None = None  # sort=updated: the feed position the page starts at, reading down

    @staticmethod
    def of(params: Any) -> tuple[ListQuery, str | None]:
        """The query of a request's parameters, and what was wrong with its status (None: nothing)."""
        status_text = (params.get("status") or "").strip()
        status = next((s for s in STATUSES if s.lower() == status_text.lower()), None)
        sort = params.get("sort") if params.get("sort") in SORTS else "updated"
        page, before = params.get("page", ""), params.get("before", "")
        query = ListQuery(workflow=params.get("workflow") or None, state=params.get("state") or None, status=status,
                          search=" ".join((params.get("q") or "").split())[:MAX_SEARCH], sort=sort,
                          page=int(page) if page.isdigit() and len(page) < 9 else 0,
                          before=int(before) if before.isdigit() and len(before) < 19 else None)
        return query, f"{status_text!r} is not a status" if status_text and status is None else None

    @property
    def filters(self) -> dict[str, str]:
        """The parameters that choose the instances and their order (the page links keep them)."""
        chosen = {"workflow": self.workflow, "state": self.state, "status": self.status, "q": self.search or None,
                  "sort": self.sort if self.sort != "updated" else None}
        return {name: value for name, value in chosen.items() if value}

    def matches(self, instance: Any) -> bool:
        return ((self.status is None or str(instance.status) == self.status)
                and (self.workflow is None or instance.workflow_id == self.workflow)
                and (self.state is None or instance.state == self.state))


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    id: str
    name: str | None
    counts: dict[str, int]
    total: int


@dataclass(frozen=True, slots=True)
class Movable:
    """Instances that could move to the latest version of their workflow (`waymark instances migrate-all`)."""

    workflow_id: str
    version: int
    count: int
    latest: int


def _templates() -> Environment:
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


def when(at: object) -> str:
    """An event time to read at a glance: `2025-01-01 12:00:00 UTC` (the exact one is in the `datetime`)."""
    text = str(at or "")
    if len(text) >= 19 and text[10] == "T" and text.endswith("Z"):
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def until(due_at: object, now: datetime | None = None) -> str:
    """How long until a timer is due, to read at a glance: `in 2 d 4 h`, `in 5 min`, `in 12 s`, `overdue by 3 s`."""
    try:
        due = parse_time(str(due_at))
    except ValueError:
        return str(due_at)
    seconds = (due - (now or datetime.now(UTC))).total_seconds()
    ahead = seconds >= 0
    left = abs(seconds)
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    parts: list[str] = []
    for name, size in units:
        if left >= size or (name == "s" and not parts):
            count = int(left // size)
            left -= count * size
            parts.append(f"{count} {name}")
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"in {text}" if ahead else f"overdue by {text}"


def time_element(at: object) -> Markup:
    """Every time on the dashboard: `2025-01-01 12:00:00 UTC`, with the stored value (to the microsecond) in the
    element's `datetime` and shown on hover (`title`)."""
    text = str(at or "")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(text, when(text))


ISO_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z\b")


def with_times(text: object) -> Markup:
    """A sentence (the explanation's) with each stored time in it shown as `time_element` does. The text is
    escaped first; what is put back in matched digits and `-:.TZ` only."""
    return Markup(ISO_TIME.sub(lambda found: str(time_element(found.group(0))), str(escape(str(text)))))


def _operation_id() -> str:
    return secrets.token_hex(16)


def create_dashboard(ctx: ApiContext, *, sessions: SessionStore | None = None) -> Starlette:
    """The dashboard as an ASGI app, to mount at `/ui` (`add_routes` does)."""
    engine = ctx.engine
    events, catalog, processor = engine.events, engine.catalog, engine.processor
    # Sealed under the server secret: every process of the host opens what another sealed.
    store = sessions or SessionStore(sealer=sealer_of(ctx.tenants, "dashboard sessions"))
    templates = _templates()
    mapper = CloudEventMapper(events)

    # ------------------------------------------------------------------------------------------ plumbing

    def alerts(tenant: str) -> list[str]:
        """What an operator of the tenant must see on every page: its storage held by the circuit breaker, its
        change-feed subscriptions paused (what they are owed is kept) or gone."""
        found = []
        breaker = engine.breakers.states().get(tenant)
        if breaker is not None:
            found.append(f"This tenant's {breaker['store']} is unreachable (since {breaker['since']}): its commands "
                         f"are held, not lost, and are applied once it answers (next try in "
                         f"{breaker['retryInSeconds']:g} s).")
        attention = engine.feed_attention
        for paused in attention(tenant) if attention is not None else []:
            when = (f"it resumes by itself at {paused['resumeAt']}" if paused["resumeAt"]
                    else "it waits to be resumed" if paused["status"] == "paused" else "the endpoint answered 410")
            found.append(f"Change-feed subscription {paused['name']} ({paused['kind']}) is {paused['status']}: "
                         f"{paused['lastError'] or 'paused by hand'}. Nothing is lost; {when}.")
        return found

    def prefix_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(request: Request, name: str, *, session: Session | None, code: int = 200,
               **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            prefix=prefix_of(request), session=session, flashes=session.take_flashes() if session else [],
            alerts=getattr(request.state, "alerts", []), **values)
        return HTMLResponse(html, status_code=code)

    def error_page(request: Request, session: Session | None, status: int, title: str, detail: str) -> HTMLResponse:
        return render(request, "error.html", session=session, code=status, title=title, detail=detail)

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def redirect(location: str) -> RedirectResponse:
        return RedirectResponse(location, status_code=303)

    def to_login(request: Request) -> RedirectResponse:
        prefix = prefix_of(request)
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"{prefix}/login?{urlencode({'next': wanted})}")

    def safe_next(request: Request, wanted: str | None) -> str:
        """Where to go after login: a page of the dashboard, never another site."""
        prefix = prefix_of(request)
        if (wanted and wanted.startswith(f"{prefix}/") and not wanted.startswith("//") and "\\" not in wanted
                and not wanted.startswith(f"{prefix}/login")):
            return wanted
        return f"{prefix}/"

    async def current(request: Request) -> Session | None:
        """The request's live session whose key still works (a rotated key or a removed tenant ends it)."""
        session = store.get(request.cookies.get(SESSION_COOKIE))
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
            store.end(session)
            return None
        return session

    def kept(request: Request, response: Response, session: Session) -> Response:
        """The response with the session sealed again into its cookie (when it was used, its flashes), or the
        cookie deleted when the session ended."""
        if session.ended:
            response.delete_cookie(SESSION_COOKIE, path=prefix_of(request) or "/", secure=secure(request),
                                   httponly=True, samesite="strict")
        else:
            set_cookie(request, response, SESSION_COOKIE, store.seal(session), path=prefix_of(request) or "/")
        return response

    def page(handler: SessionHandler) -> Handler:
        """A page for logged-in operators; anyone else is sent to the login page (and back after it)."""
        async def run(request: Request) -> Response:
            session = await current(request)
            if session is None:
                return to_login(request)
            try:
                try:
                    request.state.alerts = await ctx.run(alerts, session.tenant)
                except StoreUnavailable:
                    request.state.alerts = ["This tenant's change-feed state cannot be read right now."]
                response = await handler(request, session)
            except NotFound as e:
                response = error_page(request, session, 404, "Not found", str(e))
            except StoreUnavailable as e:
                response = error_page(request, session, 503, "Storage unavailable", str(e))
            return kept(request, response, session)
        return run

    def action(handler: Callable[[Request, Session, dict[str, str]], Awaitable[Response]]) -> Handler:
        """A POST from a page of the dashboard: same origin, and the session's CSRF token in the form."""
        async def run(request: Request) -> Response:
            session = await current(request)
            if session is None:
                return to_login(request)
            return kept(request, await checked(request, session), session)

        async def checked(request: Request, session: Session) -> Response:
            if not same_origin(request.headers, host=request.headers.get("host", "")):
                return error_page(request, session, 403, "Forbidden",
                                  "This form was sent from another site; nothing was done.")
            try:
                form = await read_form(request)
            except FormError as e:
                return error_page(request, session, 400, "Bad request", str(e))
            if not tokens_match(form.get("csrf"), session.csrf):
                return error_page(request, session, 403, "Forbidden",
                                  "The form's security token is missing or out of date; nothing was done. Reload "
                                  "the page and try again.")
            try:
                return await handler(request, session, form)
            except NotFound as e:
                return error_page(request, session, 404, "Not found", str(e))
            except StoreUnavailable as e:
                return error_page(request, session, 503, "Storage unavailable", str(e))
        return run

    def set_cookie(request: Request, response: Response, name: str, value: str, *, path: str,
                   max_age: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=path, secure=secure(request), httponly=True,
                            samesite="strict")

    # ------------------------------------------------------------------------------------------ login

    def login_page(request: Request, *, error: str | None = None, status: int = 200, tenant: str = "",
                   operator: str = "", wanted: str | None = None) -> Response:
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html", session=None, code=status, error=error, csrf=token,
                          tenant=tenant, operator=operator, next=safe_next(request, wanted),
                          bye=request.query_params.get("bye") == "1")
        set_cookie(request, response, LOGIN_COOKIE, token, path=f"{prefix_of(request)}/login", max_age=3600)
        return response

    async def show_login(request: Request) -> Response:
        if await current(request) is not None:
            return redirect(safe_next(request, request.query_params.get("next")))
        return login_page(request, wanted=request.query_params.get("next"))

    async def log_in(request: Request) -> Response:
        if not same_origin(request.headers, host=request.headers.get("host", "")):
            return error_page(request, None, 403, "Forbidden", "This form was sent from another site.")
        try:
            form = await read_form(request)
        except FormError as e:
            return error_page(request, None, 400, "Bad request", str(e))
        if not tokens_match(form.get("csrf"), request.cookies.get(LOGIN_COOKIE, "")):
            return login_page(request, status=403, error="The login form had expired. Please log in again.",
                              wanted=form.get("next"))
        key = form.get("key", "").strip()
        tenant = form.get("tenant", "").strip()
        operator = " ".join(form.get("name", "").split())[:MAX_OPERATOR]

        def again(error: str, status: int) -> Response:
            return login_page(request, error=error, status=status, tenant=tenant, operator=operator,
                              wanted=form.get("next"))

        def failed(error: str, status: int) -> Response:
            ctx.limits.failed(address)  # a failed login counts against the address, like a wrong API key
            return again(error, status)

        if not key:
            return again("Enter a tenant key (or the admin key and a tenant id).", 400)
        address = ctx.limits.address(request.scope)
        try:
            ctx.limits.check_address(address)
        except TooManyRequests as e:
            return too_many(request, e, again)
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
        session = store.create(tenant=tenant, key=secret, admin=principal.admin, operator=operator)
        log.info("dashboard login: %s for tenant %r", principal, tenant)
        response = redirect(safe_next(request, form.get("next")))
        set_cookie(request, response, SESSION_COOKIE, store.seal(session), path=prefix_of(request) or "/")
        response.delete_cookie(LOGIN_COOKIE, path=f"{prefix_of(request)}/login", secure=secure(request),
                               httponly=True, samesite="strict")
        return response

    def too_many(request: Request, problem: TooManyRequests, again: Callable[[str, int], Response]) -> Response:
        """429 with Retry-After: the login page again for a browser, a problem for any other client."""
        if "text/html" in request.headers.get("accept", ""):
            response = again(str(problem.detail), 429)
        else:
            response = problem_for(problem, request.url.path)
        response.headers["Retry-After"] = (problem.headers or {}).get("Retry-After", "1")
        return response

    async def log_out(request: Request, session: Session, form: dict[str, str]) -> Response:
        store.end(session)  # the action's wrapper deletes the cookie
        return redirect(f"{prefix_of(request)}/login?bye=1")

    # ------------------------------------------------------------------------------------------ overview

    def definition_names(tenant: str) -> dict[str, str | None]:
        names: dict[str, str | None] = {}
        for workflow_id, version in catalog.list(tenant):
            try:
                names[workflow_id] = catalog.get(tenant, workflow_id, version).display_name
            except WaymarkError:
                names[workflow_id] = None
        return names

    def overview_data(tenant: str) -> dict[str, Any]:
        latest = dict(catalog.list(tenant))
        names = definition_names(tenant)
        counts: dict[str, Counter[str]] = {}
        movable: Counter[tuple[str, int]] = Counter()  # Waiting or Faulted instances on an older version
        faults = []
        scanned, continuation, complete = 0, None, True
        while True:
            found = events.list_instances(tenant, limit=1000, continuation=continuation)
            for instance in found.items:
                counts.setdefault(instance.workflow_id, Counter())[str(instance.status)] += 1
                if (instance.status in (Status.WAITING, Status.FAULTED)
                        and instance.workflow_version < latest.get(instance.workflow_id, 0)):
                    movable[instance.workflow_id, instance.workflow_version] += 1
                if instance.fault is not None and instance.status is Status.FAULTED:
                    faults.append(instance)
            scanned += len(found.items)
            continuation = found.continuation
            if continuation is None:
                break
            if scanned >= MAX_SCANNED:
                complete = False
                break
        faults.sort(key=lambda i: i.fault.at if i.fault else "", reverse=True)
        rows = [WorkflowRow(workflow_id, names.get(workflow_id), dict(counts.get(workflow_id, Counter())),
                            sum(counts.get(workflow_id, Counter()).values()))
                for workflow_id in sorted(set(names) | set(counts))]
        totals = {status: sum(row.counts.get(status, 0) for row in rows) for status in STATUSES}
        moves = [Movable(workflow_id, version, count, latest[workflow_id])
                 for (workflow_id, version), count in sorted(movable.items())]
        recent = recently_updated(events, tenant, end=feed_end(tenant), limit=RECENTLY_UPDATED).items
        return {"rows": rows, "totals": totals, "total": scanned, "complete": complete,
                "faults": faults[:RECENT_FAULTS], "fault_count": len(faults), "names": names, "recent": recent,
                "moves": moves}

    async def overview(request: Request, session: Session) -> Response:
        data = await ctx.run(overview_data, session.tenant)
        return render(request, "overview.html", session=session, nav="overview", **data)

    # ------------------------------------------------------------------------------------------ instances

    def known_states(tenant: str, names: dict[str, str | None], workflow: str | None) -> list[str]:
        states: set[str] = set()
        for workflow_id in ([workflow] if workflow in names else list(names)[:50]):
            try:
                states.update(catalog.get(tenant, workflow_id).states)
            except WaymarkError:
                continue
        return sorted(states)[:500]

    def list_data(tenant: str, query: ListQuery) -> dict[str, Any]:
        """A page of the list: by id in natural order (`page` counts pages), or the most recently updated first
        (`before` is where the page starts in the feed)."""
        names = definition_names(tenant)
        data: dict[str, Any] = {"names": names, "states": known_states(tenant, names, query.workflow),
                                "complete": True, "following": None}
        if query.sort == "id":
            found = by_natural_id(events, tenant, status=query.status, workflow_id=query.workflow, state=query.state,
                                  search=query.search, offset=query.page * PAGE_SIZE, limit=PAGE_SIZE,
                                  max_scanned=MAX_SCANNED)
            more = (query.page + 1) * PAGE_SIZE < found.total
            return {**data, "items": found.items, "complete": found.complete, "scanned": MAX_SCANNED,
                    "following": query.page + 1 if more else None}
        matching = searched(query.search)
        recent = recently_updated(events, tenant, end=feed_end(tenant), before=query.before, limit=PAGE_SIZE,
                                  matches=lambda instance: query.matches(instance) and matching(instance))
        items = recent.items
        if query.before is None and ID.match(query.search):  # an id typed whole is found however old it is
            exact = exactly(events, tenant, query.search)
            if exact is not None and query.matches(exact) and all(i.id != exact.id for i in items):
                items = [exact, *items]
        return {**data, "items": items, "following": recent.before}

    async def instance_list(request: Request, session: Session) -> Response:
        query, problem = ListQuery.of(request.query_params)
        data = await ctx.run(list_data, session.tenant, query)
        following = data.pop("following")
        page_key = "page" if query.sort == "id" else "before"
        next_link = f"?{urlencode({**query.filters, page_key: following})}" if following is not None else None
        started = query.page > 0 or query.before is not None
        return render(request, "instances.html", session=session, nav="instances", filters=query.filters,
                      workflow=query.workflow or "", state=query.state or "", status=query.status or "",
                      search=query.search, sort=query.sort, next_link=next_link,
                      first_link=f"?{urlencode(query.filters)}" if started else None,
                      status_error=problem, error=None, **data)

    def instance_data(tenant: str, instance_id: str, start: int | None) -> dict[str, Any]:
        instance = events.load(tenant, instance_id)
        definition: WorkflowDefinition | None
        try:
            definition = catalog.get(tenant, instance.workflow_id, instance.workflow_version)
        except WaymarkError:
            definition = None
        version = instance.version
        first = max(1, min(start, version)) if start else max(1, version - TIMELINE_PAGE + 1)
        history = events.read(tenant, instance_id, after=first - 1, limit=TIMELINE_PAGE)
        last = history[-1].sequence if history else first - 1
        # The explanation and the path on the diagram are about where it is now: its latest events, whatever
        # page of the timeline is shown.
        latest = history if first == 1 and last == version else events.read(
            tenant, instance_id, after=max(0, version - PATH_EVENTS), limit=PATH_EVENTS)
        explained = explain(instance.to_dict(), [event.to_dict() for event in latest])
        taken, visited = path_of(latest)
        state = definition.states.get(instance.state) if definition else None
        return {
            "instance": instance, "definition": definition, "state": state,
            "diagram": layout(definition, current=instance.state, taken=taken, visited=visited) if definition
            else None,
            "path_partial": PATH_EVENTS if version > PATH_EVENTS else None,
            "timeline": entries(history), "explanation": explained, "context": pretty_json(dict(instance.context)),
            "earlier": max(1, first - TIMELINE_PAGE) if first > 1 else None,
            "later": last + 1 if last < version else None,
            "states": list(definition.states.values()) if definition else [],
        }

    async def instance_page(request: Request, session: Session) -> Response:
        instance_id = request.path_params["instance_id"]
        start_text = request.query_params.get("from", "")
        start = int(start_text) if start_text.isdigit() and len(start_text) < 19 else None
        data = await ctx.run(instance_data, session.tenant, instance_id, start)
        instance = data["instance"]
        return render(request, "instance.html", session=session, nav="instances", operation=_operation_id(),
                      can_recover=instance.status is Status.FAULTED,
                      can_terminate=instance.status in (Status.WAITING, Status.FAULTED), **data)

    # ------------------------------------------------------------------------------------------ actions

    def instance_url(request: Request, instance_id: str) -> str:
        return f"{prefix_of(request)}/instances/{quote(instance_id, safe='')}"

    def checked(form: dict[str, str], *, modes: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
        """The action's fields, cleaned, and what is wrong with them (None: nothing)."""
        fields = {"mode": form.get("mode", modes[0]), "state": form.get("state", "").strip(),
                  "reason": form.get("reason", "").strip(), "op": form.get("op", "")}
        if fields["mode"] not in modes:
            return fields, "Choose retry or reset."
        if not fields["reason"]:
            return fields, "Give a reason: it is recorded in the instance's history."
        if len(fields["reason"]) > MAX_REASON:
            return fields, f"The reason is longer than {MAX_REASON} characters."
        if fields["mode"] == "reset" and not ID.match(fields["state"]):
            return fields, "Choose the state to reset the instance to."
        if not OPERATION_ID.match(fields["op"]):
            fields["op"] = _operation_id()
        return fields, None

    async def operate(request: Request, session: Session, form: dict[str, str], kind: str) -> Response:
        instance_id = request.path_params["instance_id"]
        back = instance_url(request, instance_id)
        fields, problem = checked(form, modes=("retry", "reset") if kind == "recover" else ("terminate",))
        if problem is not None:
            session.flash("error", problem)
            return redirect(back)
        if form.get("confirmed") != "yes":
            instance = await ctx.run(events.load, session.tenant, instance_id)
            return render(request, "confirm.html", session=session, nav="instances", kind=kind, fields=fields,
                          instance=instance, back=back)
        by, reason, op = session.who(), fields["reason"], fields["op"]

        def run() -> Any:
            if kind == "terminate":
                return processor.terminate(session.tenant, instance_id, by=by, reason=reason, command_id=op)
            return processor.recover(session.tenant, instance_id, mode=RecoveryMode(fields["mode"]), by=by,
                                     reason=reason, recovery_id=op,
                                     state=fields["state"] if fields["mode"] == "reset" else None)

        try:
            result = await ctx.run(run)
        except (RecoveryRefused, InvalidCommand) as e:
            session.flash("error", f"Nothing was done: {e}")
            return redirect(back)
        after = result.instance
        done = {"recover": f"{fields['mode'].capitalize()} done", "terminate": "Terminated"}[kind]
        again = " (this operation had been done already: it was not applied twice)" if result.duplicate else ""
        level = "error" if str(result.outcome) == "faulted" else "success"
        session.flash(level, f"{done}{again}: outcome {result.outcome}. {after.id} is now {after.status} in state "
                             f"{after.state}.")
        log.info("dashboard %s of %s/%s by %s: %s", kind, session.tenant, instance_id, by, result.outcome)
        return redirect(back)

    async def recover(request: Request, session: Session, form: dict[str, str]) -> Response:
        return await operate(request, session, form, "recover")

    async def terminate(request: Request, session: Session, form: dict[str, str]) -> Response:
        return await operate(request, session, form, "terminate")

    # ------------------------------------------------------------------------------------------ live feed

    def feed_end(tenant: str) -> int:
        """The tenant's last feed position, found in O(log n) reads of one commit (the store has no "tail")."""
        def beyond(position: int) -> bool:
            return bool(events.read_feed(tenant, after=position, limit=1))

        if not beyond(0):
            return 0
        low, high = 0, 1
        while beyond(high):
            low, high = high, high * 2
            if high > MAX_POSITION:
                return low
        while high - low > 1:
            middle = (low + high) // 2
            if beyond(middle):
                low = middle
            else:
                high = middle
        return high

    def feed_items(request: Request, tenant: str, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        commits = events.read_feed(tenant, after=after, limit=limit)
        cloud_events = [event for group in mapper.page(tenant, commits) for event in group]
        following = commits[-1].position if commits and commits[-1].position is not None else after
        prefix = prefix_of(request)
        items = []
        for event in json.loads(to_batch(cloud_events)) if cloud_events else []:
            data = event.get("data") or {}
            subject = str(event.get("subject", ""))
            items.append({
                "id": event.get("id"), "type": str(event.get("type", "")).removeprefix(TYPE_PREFIX),
                "time": event.get("time"), "subject": subject, "sequence": event.get("sequence"),
                "workflowId": data.get("workflowId"), "previousState": data.get("previousState"),
                "newState": data.get("newState"), "newStatus": data.get("newStatus"),
                "href": f"{prefix}/instances/{quote(subject, safe='')}",
            })
        return items, following

    async def feed_page(request: Request, session: Session) -> Response:
        def load() -> tuple[list[dict[str, Any]], int]:
            end = feed_end(session.tenant)
            return feed_items(request, session.tenant, max(0, end - FEED_BACKLOG), FEED_BACKLOG)

        items, following = await ctx.run(load)
        return render(request, "feed.html", session=session, nav="feed", items=list(reversed(items)),
                      after=following)

    async def feed_events(request: Request) -> Response:
        session = await current(request)
        if session is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        after_text = request.query_params.get("after", "0")
        if not after_text.isdigit() or int(after_text) > MAX_POSITION:
            return JSONResponse({"error": "`after` is a feed position (an integer from 0)"}, status_code=400)
        try:
            items, following = await ctx.run(feed_items, request, session.tenant, int(after_text), FEED_PAGE)
        except StoreUnavailable:
            return JSONResponse({"error": "storage unavailable"}, status_code=503)
        return kept(request, JSONResponse({"events": items, "next": following}), session)  # watching is using

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own errors (no such page, a method a page does not take), as pages of the dashboard."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = "There is no such page in the dashboard." if status == 404 else str(getattr(exc, "detail", exc))
        return error_page(request, store.get(request.cookies.get(SESSION_COOKIE)), status,
                          "Not found" if status == 404 else "Request not accepted", detail)

    parked_pages = ParkedPages(ctx, render=render, redirect=redirect, prefix_of=prefix_of)
    routes = [
        Route("/", page(overview), name="overview"),
        Route("/login", show_login, methods=["GET"]),
        Route("/login", log_in, methods=["POST"]),
        Route("/logout", action(log_out), methods=["POST"]),
        Route("/instances", page(instance_list)),
        Route("/instances/{instance_id}", page(instance_page)),
        Route("/instances/{instance_id}/recover", action(recover), methods=["POST"]),
        Route("/instances/{instance_id}/terminate", action(terminate), methods=["POST"]),
        Route("/parked", page(parked_pages.page)),
        Route("/parked/act", action(parked_pages.act), methods=["POST"]),
        Route("/feed", page(feed_page)),
        Route("/feed/events", feed_events),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeadersMiddleware)],
                     exception_handlers={HTTPException: http_error})
