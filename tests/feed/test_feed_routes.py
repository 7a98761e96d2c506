"""The pull feed and the subscription routes, through FastAPI (and once through the real app with its auth)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI

from engine.api import problems
from engine.api.feed_routes import NEXT_POSITION_HEADER, feed_router
from engine.feed import WebhookPublisher
from tests.feed.conftest import ORIGIN, Rig, api_client
from tests.feed.helpers import TENANT, claim_lifecycle, create
from tests.webhook_receiver import Receiver

SECRET = "route-secret-0123456789"


@pytest.fixture
def rig(make_rig: Any) -> Rig:
    rig: Rig = make_rig()
    return rig


@pytest.fixture
def http(rig: Rig) -> Iterator[httpx.Client]:
    app = FastAPI()
    problems.install(app)
    app.include_router(feed_router(rig.feed))
    with api_client(app) as client:
        yield client


def _events(body: bytes) -> list[Any]:
    return [JSONFormat().read(None, json.dumps(item)) for item in json.loads(body)]


def test_the_pull_feed_pages_in_commit_order(rig: Rig, http: httpx.Client) -> None:
    for n in range(3):
        claim_lifecycle(rig.engine, f"c{n}")
    commits = rig.engine.events.read_feed(TENANT, limit=1000)
    expected = [f"{e.instance_id}:{e.sequence}" for c in commits for e in c.events]

    seen: list[str] = []
    after, pages = 0, 0
    while True:
        response = http.get(f"/tenants/{TENANT}/feed", params={"after": after, "limit": 4})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/cloudevents-batch+json"
        following = int(response.headers[NEXT_POSITION_HEADER])
        assert response.headers["link"] == f'</tenants/{TENANT}/feed?after={following}&limit=4>; rel="next"'
        page = _events(response.content)
        if not page:
            assert following == after  # nothing new: continue from the same place
            break
        assert following > after
        seen.extend(e.get_id() for e in page)
        after, pages = following, pages + 1
    assert seen == expected  # every event once, in commit order
    assert pages == -(-len(commits) // 4)

    create(rig.engine, "late")
    response = http.get(f"/tenants/{TENANT}/feed", params={"after": after})
    assert [e.get_id() for e in _events(response.content)] == ["late:1"]
    assert _events(response.content)[0].get_data()["newState"] == "draft"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"after": -1}, {"after": "x"}])
def test_bad_feed_queries_are_problems(http: httpx.Client, query: dict[str, Any]) -> None:
    response = http.get(f"/tenants/{TENANT}/feed", params=query)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_subscription_lifecycle(receiver: Receiver, rig: Rig, http: httpx.Client) -> None:
    path = f"/tenants/{TENANT}/subscriptions/dash"
    body = {"endpoint": receiver.url("/hook"), "secret": SECRET, "types": None, "mode": "binary"}
    response = http.put(path, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == path
    created = response.json()
    assert created["status"] == "active" and created["hasSecret"] is True and "secret" not in created
    assert created["mode"] == "binary" and created["source"] == "api"

    assert http.put(path, json={**body, "mode": "structured"}).status_code == 200
    assert http.get(path).json()["mode"] == "structured"
    assert [s["name"] for s in http.get(f"/tenants/{TENANT}/subscriptions").json()["items"]] == ["dash"]

    assert http.post(f"{path}/pause").json()["status"] == "paused"
    create(rig.engine, "c1")
    rig.drain()
    assert http.get(path).json()["backlogFrom"] == 1
    assert http.post(f"{path}/resume").json()["status"] == "active"
    rig.drain()
    assert receiver.ids("/hook") == {"c1:1"}

    assert http.delete(path).status_code == 204
    missing = http.get(path)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert http.delete(path).status_code == 404


def test_a_refusing_endpoint_is_stored_pending(receiver: Receiver, http: httpx.Client) -> None:
    receiver.path("/no").consent = False
    response = http.put(f"/tenants/{TENANT}/subscriptions/no", json={"endpoint": receiver.url("/no")})
    assert response.status_code == 201
    assert response.json()["status"] == "pending" and "did not consent" in response.json()["lastError"]


@pytest.mark.parametrize(("name", "body", "slug"), [
    ("ok", {"endpoint": "https://example.org/", "types": ["io.waymark.workflow.instance.nope"]},
     "invalid-subscription"),
    ("a:b", {"endpoint": "https://example.org/"}, "invalid-subscription"),
    ("ok", {"endpoint": "https://example.org/", "mode": "smoke-signals"}, "invalid-request"),
    ("ok", {"endpoint": "https://example.org/", "secret": "short"}, "invalid-request"),
    ("ok", {"endpoint": "https://example.org/", "extra": 1}, "invalid-request"),
])
def test_invalid_subscriptions_are_problems(http: httpx.Client, name: str, body: dict[str, Any], slug: str) -> None:
    response = http.put(f"/tenants/{TENANT}/subscriptions/{name}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == f"urn:waymark:problem:{slug}"


def test_private_destinations_are_refused_by_the_api(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=WebhookPublisher(origin=ORIGIN))
    app = FastAPI()
    problems.install(app)
    app.include_router(feed_router(rig.feed))
    with api_client(app) as client:
        response = client.put(f"/tenants/{TENANT}/subscriptions/x", json={"endpoint": receiver.url("/hook")})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:waymark:problem:destination-refused"
    assert receiver.requests(method="OPTIONS") == []


def test_included_in_the_real_app_behind_its_auth(receiver: Receiver, make_rig: Any, tmp_path: Path) -> None:
    from engine.api import create_app
    from engine.hosting.settings import Settings
    from engine.tenants import MemoryTenantRegistry

    rig = make_rig()
    registry = MemoryTenantRegistry(secret="server-secret-0123456789")
    _, key = registry.create(TENANT)
    _, other = registry.create("other")
    app = create_app(rig.engine, registry, Settings(data_dir=tmp_path, admin_key="admin-key-0123456789abcdef"),
                     routers=[feed_router(rig.feed)])  # the one argument the host adds
    create(rig.engine, "c1")
    with api_client(app) as client:
        assert client.get(f"/tenants/{TENANT}/feed").status_code == 401
        assert client.get(f"/tenants/{TENANT}/feed", headers={"Authorization": f"Bearer {other}"}).status_code == 403
        response = client.get(f"/tenants/{TENANT}/feed", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200 and [e.get_id() for e in _events(response.content)] == ["c1:1"]
        put = client.put(f"/tenants/{TENANT}/subscriptions/dash", json={"endpoint": receiver.url("/hook")},
                         headers={"Authorization": f"Bearer {key}"})
        assert put.status_code == 201, put.text
        assert "/tenants/{tenant}/subscriptions/{name}" in client.get("/openapi.json").json()["paths"]


def test_api_subscriptions_are_capped_per_tenant(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(max_subscriptions=2)
    app = FastAPI()
    problems.install(app)
    app.include_router(feed_router(rig.feed))
    with api_client(app) as client:
        for name in ("one", "two"):
            assert client.put(f"/tenants/{TENANT}/subscriptions/{name}",
                              json={"endpoint": receiver.url(f"/{name}")}).status_code == 201
        over = client.put(f"/tenants/{TENANT}/subscriptions/three", json={"endpoint": receiver.url("/three")})
        assert over.status_code == 409 and over.headers["content-type"] == "application/problem+json"
        assert over.json()["type"] == "urn:waymark:problem:subscription-limit" and over.json()["limit"] == 2
        assert "at most 2" in over.json()["detail"]
        replaced = client.put(f"/tenants/{TENANT}/subscriptions/two", json={"endpoint": receiver.url("/again")})
        assert replaced.status_code == 200, "replacing one is not a new one"
        assert client.delete(f"/tenants/{TENANT}/subscriptions/one").status_code == 204
        assert client.put(f"/tenants/{TENANT}/subscriptions/three",
                          json={"endpoint": receiver.url("/three")}).status_code == 201
    assert [s.name for s in rig.feed.subscriptions(TENANT) if s.source.value == "api"] == ["three", "two"]
