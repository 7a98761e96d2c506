"""Auth under a root path: the app mounted under `/api` refuses a missing or wrong key on every route.

The routes are enumerated from the app itself (`app.routes`, and the dashboard's own routes under `/ui`), so a
route added later without auth fails here: only the routes listed in ANONYMOUS may answer without a key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from engine.hosting.local import Service, open_service
from engine.hosting.settings import Settings
from tests.integration.conftest import ADMIN_KEY, serve_api

pytestmark = pytest.mark.integration

ROOT = "/api"
# The routes that answer without a key: liveness, the API's description and the published schemas (formats, no
# tenant data) (engine/api/access.py PUBLIC_PATHS),
# and the dashboard's sign-in and its static files. Adding one here is a decision: say why in its PR.
# `/` only redirects to the dashboard (issue 15: a newcomer's browser lands somewhere useful); /docs/assets holds
# the scripts and styles of /docs and /redoc, served here so they work offline.
ANONYMOUS = {"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
             "/schemas/workflow-definition.json", "/schemas/events/{event_type}.json", "/asyncapi.json"}
ANONYMOUS_ASSETS = ["/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                    "/docs/assets/redoc.standalone.js"]
DASHBOARD_ANONYMOUS = {"/login", "/static"}
# Every family the issue names must be among the enumerated routes (a guard against enumerating nothing).
FAMILIES = ["/tenants", "/tenants/{tenant}", "/tenants/{tenant}/keys", "/tenants/{tenant}/workflows/{workflow_id}",
            "/tenants/{tenant}/instances", "/tenants/{tenant}/instances/{instance_id}/triggers",
            "/tenants/{tenant}/triggers", "/tenants/{tenant}/instances/{instance_id}/recover",
            "/tenants/{tenant}/recoveries", "/tenants/{tenant}/terminations", "/tenants/{tenant}/feed",
            "/tenants/{tenant}/subscriptions/{name}", "/tenants/{tenant}/commands/poison", "/readyz"]


@dataclass
class Call:
    method: str
    template: str
    path: str  # as served under ROOT

    def __str__(self) -> str:
        return f"{self.method} {ROOT}{self.path} ({self.template})"


def concrete(template: str, tenant: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: tenant if m.group(1) == "tenant" else "x-1", template)


def api_calls(routes: list[BaseRoute], tenant: str) -> list[Call]:
    calls = []
    for route in routes:
        if isinstance(route, Mount) or not isinstance(route, Route) or route.path in ANONYMOUS:
            continue
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                calls.append(Call(method, route.path, concrete(route.path, tenant)))
    return calls


def dashboard_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    mounts = [route for route in routes if isinstance(route, Mount) and route.path == "/ui"]
    assert len(mounts) == 1, "the dashboard is mounted at /ui"
    return list(mounts[0].routes)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Every route is tried with no key from one address: the per-address limit (tests/integration/test_rate_limits.py)
    # would answer 429 after a few, so it is off here.
    settings = Settings(data_dir=tmp_path_factory.mktemp("root-path"), admin_key=ADMIN_KEY, load_samples=False,
                        workers=0, rate_limit_per_address=0)
    opened = open_service(settings)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def keys(service: Service) -> dict[str, str]:
    return {tenant: service.tenants.create(tenant)[1] for tenant in ("acme", "globex")}


def send_all(service: Service, calls: list[Call], key: str | None) -> dict[str, httpx.Response]:
    """Each call through the app under ROOT; `key` is a bearer key, or a whole `Authorization` value with a space."""
    async def run() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=service.app, root_path=ROOT)
        headers = {"Authorization": key if key and " " in key else f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as client:
            return {str(call): await client.request(call.method, ROOT + call.path, json={}) for call in calls}
    return asyncio.run(run())


def test_every_family_is_among_the_enumerated_routes(service: Service) -> None:
    unknown = [route for route in service.app.routes if not isinstance(route, Route | Mount)]
    assert unknown == [], "routes the auth cannot see into (include_router?): add their routes to the app itself"
    templates = {call.template for call in api_calls(list(service.app.routes), "acme")}
    assert [family for family in FAMILIES if family not in templates] == []


@pytest.mark.parametrize("key", [None, "wmk_not-a-key-of-anyone", "Basic abc"], ids=["no key", "wrong key", "basic"])
def test_every_route_refuses_a_missing_or_wrong_key_under_a_root_path(service: Service, keys: dict[str, str],
                                                                      key: str | None) -> None:
    answers = send_all(service, api_calls(list(service.app.routes), "acme"), key)
    wrong = {call: f"{r.status_code} {r.text[:80]}" for call, r in answers.items() if r.status_code != 401}
    assert wrong == {}
    for response in answers.values():
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_another_tenants_key_is_refused_on_every_tenant_route_and_admin_routes(service: Service,
                                                                               keys: dict[str, str]) -> None:
    calls = api_calls(list(service.app.routes), "acme")
    answers = send_all(service, calls, keys["globex"])
    wrong = {call: f"{r.status_code} {r.text[:80]}" for call, r in answers.items() if r.status_code != 403}
    assert wrong == {}, "globex's key reached acme's routes or an admin route"


def test_the_anonymous_routes_answer_without_a_key(service: Service) -> None:
    calls = [Call("GET", path, path.replace("{event_type}", "io.waymark.workflow.instance.created"))
             for path in [*sorted(ANONYMOUS - {"/"}), *ANONYMOUS_ASSETS]]
    answers = send_all(service, calls, None)
    assert {call: r.status_code for call, r in answers.items() if r.status_code != 200} == {}
    front = send_all(service, [Call("GET", "/", "/")], None)
    assert [(r.status_code, r.headers.get("location")) for r in front.values()] == [(302, f"{ROOT}/ui/")]


def test_every_dashboard_page_needs_a_session_under_a_root_path(service: Service, keys: dict[str, str]) -> None:
    calls = []
    for route in dashboard_routes(list(service.app.routes)):
        path = str(getattr(route, "path", ""))
        if path in DASHBOARD_ANONYMOUS:
            continue
        assert isinstance(route, Route), f"{path}: a dashboard route of a kind this test does not know"
        calls += [Call(method, "/ui" + path, "/ui" + concrete(path, "acme"))
                  for method in sorted(route.methods or {"GET"}) if method != "HEAD"]
    assert len(calls) >= 6
    for key in (None, keys["acme"], ADMIN_KEY):  # a bearer key is not a session: the dashboard ignores it
        answers = send_all(service, calls, key)
        for name, response in answers.items():
            if response.status_code == 303:
                assert response.headers["location"].startswith(f"{ROOT}/ui/login?"), name
            else:
                assert response.status_code == 401, f"{name}: {response.status_code}"


def test_dashboard_login_refuses_a_wrong_key_under_a_root_path(service: Service) -> None:
    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=service.app, root_path=ROOT)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            page = await client.get(f"{ROOT}/ui/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            answer = await client.post(f"{ROOT}/ui/login", data={"csrf": token.group(1), "key": "wmk_wrong"},
                                       headers={"Origin": "http://testserver"})
            return page, answer
    page, answer = asyncio.run(run())
    assert page.status_code == 200
    assert answer.status_code == 401 and "waymark_session" not in answer.headers.get("set-cookie", "")


def test_a_real_server_with_a_root_path_refuses_a_missing_key(tmp_path: Path) -> None:
    """uvicorn --root-path: the proxy strips the prefix, uvicorn puts it back into the scope's path."""
    with serve_api(tmp_path, workers=0, root_path=ROOT) as server:
        server.onboard("acme", samples=False)
        with server.client() as anonymous:
            for method, path in [("GET", "/tenants/acme/workflows"), ("POST", "/tenants"),
                                 ("GET", "/tenants/acme/feed"), ("PUT", "/tenants/acme/subscriptions/s"),
                                 ("GET", "/tenants/acme/commands/poison"), ("GET", "/readyz")]:
                response = anonymous.request(method, path, json={"id": "intruder"})
                assert response.status_code == 401, f"{method} {path}: {response.status_code} {response.text}"
            assert anonymous.get("/healthz").status_code == 200
            page = anonymous.get("/ui/instances")
            assert page.status_code == 303 and page.headers["location"].startswith(f"{ROOT}/ui/login?")
        with server.admin() as admin:
            assert admin.get("/tenants/acme/workflows").status_code == 200
