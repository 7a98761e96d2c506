"""Who may call a route: decided per route, from the route the request is routed to.

The auth middleware finds the route with Starlette's own matching (the path with the `root_path` removed, as
the router sees it), so an app mounted under a prefix (`--root-path`, a reverse proxy, a Functions route
prefix) is guarded exactly as it is served. A route's access:

    PUBLIC    no key: liveness, the API's description and its pages (PUBLIC_PATHS, and their assets in
              PUBLIC_MOUNTS), the published schemas, the front door `/` (a redirect to the dashboard)
    SESSION   a mounted app with its own sign-in (the dashboard under /ui: SESSION_MOUNTS)
    TENANT    a route with a `{tenant}` path parameter: that tenant's key, or the admin key
    ADMIN     every other route: the admin key only

Deny is the default: a new route is PUBLIC only when its path is added to PUBLIC_PATHS (and to the root-path
test's list of anonymous routes, tests/integration/test_root_path_auth.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

__all__ = ["PUBLIC_MOUNTS", "PUBLIC_PATHS", "SESSION_MOUNTS", "Access", "access_of", "routed"]


class Access(Enum):
    PUBLIC = "public"
    SESSION = "session"
    TENANT = "tenant"
    ADMIN = "admin"


PUBLIC_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/schemas/workflow-definition.json", "/schemas/events/{event_type}.json", "/asyncapi.json"})
PUBLIC_MOUNTS = frozenset({"/docs/assets"})  # the scripts and styles of /docs and /redoc (engine/api/front.py)
SESSION_MOUNTS = frozenset({"/ui"})


def access_of(route: BaseRoute) -> Access:
    """A route of a kind not known here (an `include_router` wrapper, whose inner routes are not visible) is
    ADMIN: add routers' routes to the app itself (`create_app(routers=...)` does)."""
    path = str(getattr(route, "path", ""))
    if isinstance(route, Mount):
        if path in PUBLIC_MOUNTS:
            return Access.PUBLIC
        return Access.SESSION if path in SESSION_MOUNTS else Access.ADMIN
    if not isinstance(route, Route):
        return Access.ADMIN
    if path in PUBLIC_PATHS:
        return Access.PUBLIC
    if "tenant" in getattr(route, "param_convertors", {}):
        return Access.TENANT
    return Access.ADMIN


def routed(routes: Iterable[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, dict[str, Any]]:
    """The route the router will run for this request, and its path parameters; a route that matches the path
    but not the method (the router answers 405) counts, so its access is checked first. (None, {}) when no route
    matches (the router answers 404 and runs nothing)."""
    partial: tuple[BaseRoute, dict[str, Any]] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, dict(child.get("path_params", {}))
        if match is Match.PARTIAL and partial is None:
            partial = route, dict(child.get("path_params", {}))
    return partial if partial is not None else (None, {})
