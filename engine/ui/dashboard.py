"""The operator dashboard: server-rendered pages under `/ui`, a session per operator, a little JavaScript.

    GET  /ui/                          overview: instances by workflow and status, recent faults
    GET  /ui/login   POST /ui/login    a tenant key (or the admin key and a tenant id) → a session; failed logins
                                       count against the client address's rate limit (429 when spent)
    POST /ui/logout
    GET  /ui/instances                 filters (workflow, state, status, id search), pages of 25, the most
                                       recently updated first or by id in natural order (instances.py)
    GET  /ui/instances/{id}            state, context, diagram, timeline, explanation, actions (instance.py)
    POST /ui/instances/{id}/recover    retry or reset, with a reason: a confirm page first, unless confirmed
    POST /ui/instances/{id}/terminate  the same for terminating (instance_actions.py)
    GET  /ui/parked                    parked commands: filters, pages of 25, requeue or discard (parked.py)
    POST /ui/parked/act                requeue or discard one, or every match: a confirm page first
    GET  /ui/feed                      the change feed, live (app.js polls the next route every 2 s)
    GET  /ui/feed/events?after=N       the pull feed, summarised, for that page (JSON, session-authenticated)
    GET  /ui/static/...                the stylesheet and the script (nothing comes from anywhere else)

The pages call the same engine the API calls (the event store, the definition catalog, the processor) rather
than the API over HTTP: the session stands in for the bearer key, and the tenant is the session's, never a
path parameter, so a session can only ever see its own tenant.

Each page lives in a module of its own (overview.py, login.py, instances.py, instance.py, instance_actions.py,
parked.py, feed.py); pages.py holds what they share (templates, the session cookie, the guards of pages and
actions). This module only routes to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from engine.ui.feed import FeedPages
from engine.ui.instance import InstancePage
from engine.ui.instance_actions import InstanceActions
from engine.ui.instances import InstanceList
from engine.ui.login import LoginPages
from engine.ui.overview import OverviewPage
from engine.ui.pages import HERE, Pages
from engine.ui.parked import ParkedPages
from engine.ui.security import SecurityHeadersMiddleware
from engine.ui.sessions import SessionStore

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["create_dashboard"]


def create_dashboard(ctx: ApiContext, *, sessions: SessionStore | None = None) -> Starlette:
    """The dashboard as an ASGI app, to mount at `/ui` (`add_routes` does)."""
    pages = Pages(ctx, sessions=sessions)
    login, overview, feed = LoginPages(pages), OverviewPage(pages), FeedPages(pages)
    instances, instance, actions = InstanceList(pages), InstancePage(pages), InstanceActions(pages)
    parked = ParkedPages(ctx, render=pages.render, redirect=pages.redirect, prefix_of=pages.prefix_of)
    routes = [
        Route("/", pages.page(overview.page), name="overview"),
        Route("/login", login.show, methods=["GET"]),
        Route("/login", login.log_in, methods=["POST"]),
        Route("/logout", pages.action(login.log_out), methods=["POST"]),
        Route("/instances", pages.page(instances.page)),
        Route("/instances/{instance_id}", pages.page(instance.page)),
        Route("/instances/{instance_id}/recover", pages.action(actions.recover), methods=["POST"]),
        Route("/instances/{instance_id}/terminate", pages.action(actions.terminate), methods=["POST"]),
        Route("/parked", pages.page(parked.page)),
        Route("/parked/act", pages.action(parked.act), methods=["POST"]),
        Route("/feed", pages.page(feed.page)),
        Route("/feed/events", feed.events_since),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeadersMiddleware)],
                     exception_handlers={HTTPException: pages.http_error})
