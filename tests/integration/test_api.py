"""The HTTP API over real HTTP: uvicorn on loopback, a real SQLite engine, worker threads (conftest.py).

Every route, its status codes and its errors; auth and cross-tenant attempts; limits; idempotency; paging;
`Prefer: wait`; and that no junk input gets a 5xx.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ADMIN_KEY, SAMPLES, RunningServer, serve_api

pytestmark = pytest.mark.integration

WAIT = {"Prefer": "wait=10"}
CLAIM = {"claimant": "J George"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem of this status and return its body."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"], body
    return body


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def acme(api_server: RunningServer) -> str:
    return api_server.onboard("acme")


@pytest.fixture(scope="module")
def globex(api_server: RunningServer) -> str:
    return api_server.onboard("globex")


@pytest.fixture
def http(api_server: RunningServer, acme: str) -> Iterator[httpx.Client]:
    with api_server.client(acme) as client:
        yield client


def create(http: httpx.Client, tenant: str = "acme", *, context: dict[str, Any] | None = None,
           workflow: str = "expense-claim", **fields: Any) -> dict[str, Any]:
    body = {"workflowId": workflow, "id": fields.pop("id", unique("claim")),
            "context": CLAIM if context is None else context, **fields}
    response = http.post(f"/tenants/{tenant}/instances", json=body, headers=WAIT)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def trigger(http: httpx.Client, instance_id: str, topic: str, content: Any = None, *, tenant: str = "acme",
            **fields: Any) -> dict[str, Any]:
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/triggers",
                         json={"topic": topic, "content": content, **fields}, headers=WAIT)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# ---------------------------------------------------------------------------------------------- health, openapi

def test_healthz_is_liveness_only_anonymous_and_touches_no_storage(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0) as server:
        server.onboard("quiet", samples=False)
        server.engine.queue.close()  # type: ignore[attr-defined]
        server.service.tenants.close()
        with server.client() as http:
            response = http.get("/healthz")
        assert response.status_code == 200 and response.json() == {"status": "ok"}, "no counts, no storage call"
        assert response.headers["cache-control"] == "no-store"


def test_readyz_needs_the_admin_key_and_reports_each_check(api_server: RunningServer, acme: str) -> None:
    with api_server.client() as anonymous:
        problem(anonymous.get("/readyz"), 401)
    with api_server.client(acme) as tenant:
        problem(tenant.get("/readyz"), 403)
    with api_server.admin() as admin:
        response = admin.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["registry"] == {"status": "ok", "tenants": len(api_server.service.tenants.list())}
    assert body["checks"]["storage"]["status"] == "ok" and body["checks"]["storage"]["pinged"] >= 1
    assert body["checks"]["queue"]["status"] == "ok" and body["checks"]["queue"]["poisoned"] == 0


def test_readyz_is_503_problem_naming_the_check_when_the_queue_cannot_be_reached(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0) as server:
        key = server.onboard("broken", samples=False)
        server.engine.queue.close()  # type: ignore[attr-defined]
        with server.admin() as http:
            response = http.get("/readyz")
            body = problem(response, 503)
            assert response.headers["retry-after"] == "1"
        assert "queue" in body["detail"] and body["checks"]["queue"]["status"] == "unavailable"
        assert body["checks"]["registry"]["status"] == "ok", "one failing check does not hide the others"
        assert str(tmp_path) not in json.dumps(body), "driver details (paths) are for the log, not the client"
        with server.client() as anonymous:
            assert anonymous.get("/healthz").status_code == 200, "liveness is not readiness"
        with server.client(key) as http:
            sample = json.loads((SAMPLES / "expense-claim.json").read_text())
            assert http.put("/tenants/broken/workflows/expense-claim", json=sample).status_code == 201
            response = http.post("/tenants/broken/instances", json={"workflowId": "expense-claim"})
            problem(response, 503)
            assert response.headers["retry-after"] == "1"


def test_openapi_documents_every_route_with_examples(api_server: RunningServer) -> None:
    with api_server.client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    paths = doc["paths"]
    expected = {
        ("/tenants", "post"), ("/tenants/{tenant}", "get"), ("/tenants/{tenant}/keys", "post"),
        ("/tenants/{tenant}/workflows", "get"), ("/tenants/{tenant}/workflows/{workflow_id}", "put"),
        ("/tenants/{tenant}/workflows/{workflow_id}", "get"),
        ("/tenants/{tenant}/workflows/{workflow_id}/diagram", "get"),
        ("/tenants/{tenant}/instances", "post"), ("/tenants/{tenant}/instances", "get"),
        ("/tenants/{tenant}/instances/{instance_id}", "get"),
        ("/tenants/{tenant}/instances/{instance_id}/events", "get"),
        ("/tenants/{tenant}/instances/{instance_id}/triggers", "post"), ("/tenants/{tenant}/triggers", "post"),
        ("/healthz", "get"), ("/readyz", "get"),
    }
    assert {(path, method) for path, ops in paths.items() for method in ops} >= expected
    schemas = doc["components"]["schemas"]
    for name in ("CreateInstanceRequest", "TriggerRequest", "BroadcastRequest", "InstanceView", "TriggerResult",
                 "ProblemDetails", "TenantCreated"):
        assert schemas[name].get("examples"), name
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    create_op = paths["/tenants/{tenant}/instances"]["post"]
    assert {"201", "202", "404", "409", "422"} <= set(create_op["responses"])
    assert "application/problem+json" in create_op["responses"]["404"]["content"]
    assert paths["/tenants/{tenant}/workflows/{workflow_id}"]["put"]["requestBody"]["content"]["application/json"][
        "example"]["id"] == "expense-claim"


def test_the_front_door_and_api_docs_need_nothing_from_elsewhere(api_server: RunningServer) -> None:
    """`/` → `/ui/`; `/docs` and `/redoc` load their scripts and styles from this server (see also the browser
    test, which renders them with every other address refused)."""
    import re

    with httpx.Client(base_url=api_server.url, follow_redirects=False) as http:
        front = http.get("/")
        assert front.status_code == 302 and front.headers["location"] == "/ui/"
        for page in ("/docs", "/redoc"):
            html = http.get(page)
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert assets and all(asset.startswith("/") for asset in assets), assets
            for asset in assets:
                served = http.get(asset)
                assert served.status_code == 200 and len(served.content) > 100, asset
        assert "'/openapi.json'" in http.get("/docs").text


# ---------------------------------------------------------------------------------------------- auth, tenants

def test_onboarding_returns_the_key_once_and_creates_storage(api_server: RunningServer) -> None:
    tenant = unique("t").lower()
    with api_server.admin() as http:
        response = http.post("/tenants", json={"id": tenant, "config": {"plan": "free"}})
        assert response.status_code == 201
        assert response.headers["location"] == f"/tenants/{tenant}"
        body = response.json()
        assert body["id"] == tenant and body["key"].startswith("wmk_")
        problem(http.post("/tenants", json={"id": tenant}), 409)
        shown = http.get(f"/tenants/{tenant}").json()
    assert shown["config"] == {"plan": "free"} and "key" not in shown and "keyHash" not in shown
    assert body["key"] not in json.dumps(shown)
    assert (api_server.data_dir / "tenants" / f"{tenant}.db").exists()
    with api_server.client(body["key"]) as http:
        assert http.get(f"/tenants/{tenant}").status_code == 200


def test_onboarding_refuses_a_configuration_the_hosts_cannot_read(api_server: RunningServer) -> None:
    tenant = unique("t").lower()
    with api_server.admin() as http:
        refused = problem(http.post("/tenants", json={"id": tenant, "config": {
            "store": "postgres", "database": 7, "plan": "free"}}), 422)
        assert refused["type"] == "urn:waymark:problem:invalid-tenant-config"
        assert [e["message"] for e in refused["errors"]] == [
            "store must be one of sqlite, cosmos, not 'postgres'", "database must be a string, not int"]
        problem(http.get(f"/tenants/{tenant}"), 404)  # nothing was recorded


@pytest.mark.parametrize("tenant_id", ["A", "Acme", "-acme", "a_b", "a" * 64, "", "ac me"])
def test_onboarding_rejects_invalid_ids_with_a_field_path(api_server: RunningServer, tenant_id: str) -> None:
    with api_server.admin() as http:
        body = problem(http.post("/tenants", json={"id": tenant_id}), 422)
    assert body["errors"][0]["path"] == "body.id"


def test_onboarding_needs_the_admin_key(api_server: RunningServer, acme: str) -> None:
    with api_server.client() as http:
        response = http.post("/tenants", json={"id": "sneaky"})
        problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    with api_server.client("wmk_not-a-key") as http:
        response = http.post("/tenants", json={"id": "sneaky"})
        problem(response, 401)
        assert "invalid_token" in response.headers["www-authenticate"]
    with api_server.client(acme) as http:
        problem(http.post("/tenants", json={"id": "sneaky"}), 403)
    with api_server.admin() as http:
        problem(http.get("/tenants/sneaky"), 404)


@pytest.mark.parametrize("header", ["", "Bearer", "Basic dXNlcjpwYXNz", "bearer nope", "Token abc",
                                    f"Bearer {ADMIN_KEY}x", f"Bearer {ADMIN_KEY[:-1]}"])
def test_tenant_routes_answer_401_without_a_valid_key(api_server: RunningServer, acme: str, header: str) -> None:
    with api_server.client() as http:
        response = http.get("/tenants/acme/instances", headers={"Authorization": header} if header else {})
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_admin_key_may_call_every_tenant_route(api_server: RunningServer, acme: str) -> None:
    with api_server.admin() as admin:
        instance = create(admin)
        assert admin.get(f"/tenants/acme/instances/{instance['id']}").status_code == 200
        assert admin.get("/tenants/acme/workflows").status_code == 200
        problem(admin.get("/tenants/nobody/instances"), 404)
        problem(admin.get(f"/tenants/nobody/instances/{instance['id']}"), 404)


def test_another_tenants_key_is_forbidden_everywhere_and_sees_no_data(api_server: RunningServer, acme: str,
                                                                      globex: str) -> None:
    with api_server.client(globex) as own:
        secret = create(own, "globex", id="globex-secret-claim", context={"claimant": "Top Secret"})
        trigger(own, secret["id"], "update", {"amount": 99}, tenant="globex", id="globex-trigger")
    sample = (SAMPLES / "expense-claim.json").read_bytes()
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/tenants/globex", {}),
        ("POST", "/tenants/globex/keys", {}),
        ("GET", "/tenants/globex/workflows", {}),
        ("GET", "/tenants/globex/workflows/expense-claim", {}),
        ("GET", "/tenants/globex/workflows/expense-claim/diagram", {}),
        ("PUT", "/tenants/globex/workflows/expense-claim", {"content": sample,
                                                           "headers": {"Content-Type": "application/json"}}),
        ("POST", "/tenants/globex/instances", {"json": {"workflowId": "expense-claim", "id": "stolen"}}),
        ("GET", "/tenants/globex/instances", {}),
        ("GET", "/tenants/globex/instances/globex-secret-claim", {}),
        ("GET", "/tenants/globex/instances/globex-secret-claim/events", {}),
        ("POST", "/tenants/globex/instances/globex-secret-claim/triggers", {"json": {"topic": "abandon"}}),
        ("POST", "/tenants/globex/instances/globex-secret-claim/triggers", {"json": {"topic": "x",
                                                                                     "id": "globex-trigger"}}),
        ("POST", "/tenants/globex/triggers", {"json": {"topic": "abandon", "subjects": ["x"]}}),
        # a tenant key never learns whether another tenant exists
        ("GET", "/tenants/no-such-tenant/instances", {}),
        ("GET", "/tenants/no-such-tenant", {}),
    ]
    with api_server.client(acme) as http:
        for method, path, kwargs in attempts:
            response = http.request(method, path, **kwargs)
            body = problem(response, 403)
            text = response.text
            assert "Top Secret" not in text and "globex-trigger" not in text and "draft" not in text, (path, body)
    with api_server.client(globex) as own:
        instance = own.get("/tenants/globex/instances/globex-secret-claim").json()
        assert instance["status"] == "Waiting" and instance["version"] == 2  # nothing acme sent reached it
        assert own.get("/tenants/globex/instances?limit=1000").json()["items"][0]["id"] == "globex-secret-claim"
    assert not (api_server.data_dir / "tenants" / "no-such-tenant.db").exists()


def test_key_rotation_replaces_the_key(api_server: RunningServer) -> None:
    tenant = unique("rot").lower()
    with api_server.admin() as admin:
        old = admin.post("/tenants", json={"id": tenant}).json()["key"]
    with api_server.client(old) as http:
        response = http.post(f"/tenants/{tenant}/keys")
        assert response.status_code == 200
        new = response.json()["key"]
        assert new != old
        problem(http.get(f"/tenants/{tenant}"), 401)
    with api_server.client(new) as http:
        assert http.get(f"/tenants/{tenant}").status_code == 200


# ---------------------------------------------------------------------------------------------- workflows

def test_workflow_upload_versions_read_list_and_diagram(http: httpx.Client) -> None:
    sample = json.loads((SAMPLES / "expense-claim.json").read_text())
    sample.pop("id")
    response = http.put("/tenants/acme/workflows/claims-v", json=sample)
    assert response.status_code == 201, response.text
    assert response.json()["version"] == 1 and response.json()["id"] == "claims-v"
    response = http.put("/tenants/acme/workflows/claims-v", json={**sample, "id": "claims-v", "displayName": "v2"})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert http.get("/tenants/acme/workflows/claims-v").json()["displayName"] == "v2"
    first = http.get("/tenants/acme/workflows/claims-v", params={"version": 1}).json()
    assert first["version"] == 1 and first["displayName"] == "Expense claim"
    problem(http.get("/tenants/acme/workflows/claims-v", params={"version": 3}), 404)
    body = problem(http.get("/tenants/acme/workflows/nope"), 404)
    assert "nope" in body["detail"] and "acme" in body["detail"]
    problem(http.get("/tenants/acme/workflows/claims-v", params={"version": 0}), 422)
    listed = http.get("/tenants/acme/workflows").json()["items"]
    assert {"id": "claims-v", "version": 2} in listed and {"id": "expense-claim", "version": 1} in listed

    diagram = http.get("/tenants/acme/workflows/claims-v/diagram")
    assert diagram.status_code == 200 and diagram.headers["content-type"].startswith("text/plain")
    assert diagram.text.startswith("stateDiagram-v2") and "draft --> awaiting_approval : submit" in diagram.text
    as_json = http.get("/tenants/acme/workflows/claims-v/diagram", params={"format": "json"}).json()
    assert as_json["version"] == 2 and as_json["mermaid"] == diagram.text and as_json["highlight"] is None
    problem(http.get("/tenants/acme/workflows/claims-v/diagram", params={"format": "svg"}), 422)
    problem(http.get("/tenants/acme/workflows/nope/diagram"), 404)


def test_diagram_highlights_an_instance(http: httpx.Client) -> None:
    instance = create(http)
    trigger(http, instance["id"], "update", {"amount": 5})
    trigger(http, instance["id"], "submit")
    response = http.get("/tenants/acme/workflows/expense-claim/diagram", params={"instance": instance["id"]})
    assert response.text.rstrip().endswith("class awaiting_approval current")
    body = http.get("/tenants/acme/workflows/expense-claim/diagram",
                    params={"instance": instance["id"], "format": "json"}).json()
    assert body["highlight"] == "awaiting-approval"
    problem(http.get("/tenants/acme/workflows/expense-claim/diagram", params={"instance": "missing"}), 404)
    body = problem(http.get("/tenants/acme/workflows/document-review/diagram", params={"instance": instance["id"]}),
                   422)
    assert body["errors"][0]["path"] == "query.instance"


def test_an_invalid_definition_is_rejected_with_every_problem(http: httpx.Client) -> None:
    document = {
        "id": "other-id",
        "initialState": "start",
        "states": {
            "start": {"transitions": [
                {"id": "go", "trigger": "go", "target": "nowhere"},
                {"id": "go", "trigger": "again", "target": "end",
                 "conditions": [{"type": "expression", "expression": "context.x >"}]},
                {"id": "odd", "trigger": "odd", "target": "end", "actions": [{"type": "teleport"}]},
            ]},
            "end": {},
            "island": {},
        },
    }
    body = problem(http.put("/tenants/acme/workflows/broken", json=document), 422)
    paths = {error["path"] for error in body["errors"]}
    assert "$.id" in paths  # the id does not match the URL
    assert "$.states.start.transitions[0].target" in paths  # unknown target state
    assert "$.states.start.transitions[1].id" in paths  # duplicate transition id
    assert any(p.startswith("$.states.start.transitions[1].conditions[0]") for p in paths)  # does not compile
    assert "$.states.start.transitions[2].actions[0].type" in paths  # unknown action type
    assert "$.states.island" in paths  # unreachable
    assert all(error["message"] for error in body["errors"])
    assert "broken" in body["detail"]
    problem(http.get("/tenants/acme/workflows/broken"), 404)  # nothing invalid is stored


@pytest.mark.parametrize(("content", "status"), [
    (b"[1, 2]", 422), (b"null", 422), (b"\"text\"", 422), (b"{", 400), (b"", 400), (b"\xff\xfe\x00", 400),
    (b"[" * 100_000, 400), (b'{"initialState": "a", "states": {"a": {}}, "x": NaN}', 422),
    (b'{"initialState": "a", "states": {"a": {}, "a": {}}}', 422),
])
def test_malformed_definitions_are_client_errors(http: httpx.Client, content: bytes, status: int) -> None:
    response = http.put("/tenants/acme/workflows/junk", content=content, headers={"Content-Type": "application/json"})
    problem(response, status)


# ---------------------------------------------------------------------------------------------- create

def test_create_is_accepted_then_processed(http: httpx.Client) -> None:
    instance_id = unique("claim")
    response = http.post("/tenants/acme/instances", json={"workflowId": "expense-claim", "id": instance_id,
                                                          "context": CLAIM, "interests": ["claimant:jg"]})
    assert response.status_code == 202
    assert response.headers["location"] == f"/tenants/acme/instances/{instance_id}"
    body = response.json()
    assert body["instanceId"] == instance_id and body["triggerId"]
    eventually(lambda: http.get(f"/tenants/acme/instances/{instance_id}").status_code == 200)
    instance = http.get(f"/tenants/acme/instances/{instance_id}").json()
    assert instance["state"] == "draft" and instance["givenInterests"] == ["claimant:jg"]
    assert instance["interests"] == sorted(["claimant:jg", instance["id"]])  # its id is always one
    events = http.get(f"/tenants/acme/instances/{instance_id}/events").json()["items"]
    assert events[0]["triggerId"] == body["triggerId"]


def test_create_with_prefer_wait_returns_201_and_the_instance(http: httpx.Client) -> None:
    response = http.post("/tenants/acme/instances", json={"workflowId": "expense-claim", "context": CLAIM},
                         headers={"Prefer": "wait=10"})
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "wait=10"
    body = response.json()
    assert set(body) >= {"id", "workflowId", "workflowVersion", "state", "status", "context", "interests", "version",
                         "fault"}
    assert body["status"] == "Waiting" and body["version"] == 1 and body["fault"] is None
    assert response.headers["location"].endswith(f"/instances/{body['id']}")
    # a wait above 30 s is clamped
    response = http.post("/tenants/acme/instances", json={"workflowId": "expense-claim", "context": CLAIM},
                         headers={"Prefer": "respond-async, wait=3600"})
    assert response.status_code == 201 and response.headers["preference-applied"] == "wait=30"


def test_create_that_faults_is_reported_faulted(http: httpx.Client) -> None:
    body = create(http, context={})  # the entry condition has(context.claimant) fails
    assert body["status"] == "Faulted"
    assert body["fault"]["errorType"] == "EntryConditionFailed"


def test_create_errors(http: httpx.Client) -> None:
    body = problem(http.post("/tenants/acme/instances", json={"workflowId": "no-such-flow"}), 404)
    assert "no-such-flow" in body["detail"]
    existing = create(http)
    body = problem(http.post("/tenants/acme/instances", json={"workflowId": "expense-claim", "id": existing["id"]}),
                   409)
    assert existing["id"] in body["detail"] and body["instanceId"] == existing["id"]


def test_repeating_a_recorded_creation_returns_its_result(http: httpx.Client) -> None:
    request = {"workflowId": "expense-claim", "id": unique("claim"), "context": CLAIM, "triggerId": unique("mk")}
    first = http.post("/tenants/acme/instances", json=request, headers=WAIT)
    assert first.status_code == 201
    again = http.post("/tenants/acme/instances", json=request)
    assert again.status_code == 201
    assert again.json() == first.json()
    events = http.get(f"/tenants/acme/instances/{request['id']}/events").json()["items"]
    assert len(events) == 1


@pytest.mark.parametrize(("body", "path"), [
    ({}, "body.workflowId"),
    ({"workflowId": "expense-claim", "context": [1]}, "body.context"),
    ({"workflowId": "expense-claim", "context": "x"}, "body.context"),
    ({"workflowId": "expense-claim", "interests": "claimant"}, "body.interests"),
    ({"workflowId": "expense-claim", "interests": [1]}, "body.interests[0]"),
    ({"workflowId": "expense-claim", "id": "bad id!"}, "body.id"),
    ({"workflowId": "expense-claim", "unknown": 1}, "body.unknown"),
    ({"workflowId": 42}, "body.workflowId"),
])
def test_create_validation_names_the_field(http: httpx.Client, body: dict[str, Any], path: str) -> None:
    errors = problem(http.post("/tenants/acme/instances", json=body), 422)["errors"]
    assert path in {error["path"] for error in errors}, errors


# ---------------------------------------------------------------------------------------------- triggers

def test_trigger_is_accepted_with_location_then_applied(http: httpx.Client) -> None:
    instance = create(http)
    response = http.post(f"/tenants/acme/instances/{instance['id']}/triggers",
                         json={"topic": "update", "content": {"amount": 3}})
    assert response.status_code == 202
    assert response.headers["location"] == f"/tenants/acme/instances/{instance['id']}"
    trigger_id = response.json()["triggerId"]
    eventually(lambda: http.get(f"/tenants/acme/instances/{instance['id']}").json()["version"] == 2)
    events = http.get(f"/tenants/acme/instances/{instance['id']}/events").json()["items"]
    assert events[-1]["triggerId"] == trigger_id and events[-1]["type"] == "TransitionApplied"


def test_trigger_with_prefer_wait_returns_the_outcome(http: httpx.Client) -> None:
    instance = create(http)
    result = trigger(http, instance["id"], "update", {"amount": 12.5})
    assert result["outcome"] == "applied"
    assert result["instance"]["context"]["amount"] == 12.5 and result["instance"]["version"] == 2
    assert trigger(http, instance["id"], "submit")["instance"]["state"] == "awaiting-approval"
    assert trigger(http, instance["id"], "nonsense", {})["outcome"] == "ignored"
    # the approver may not be the claimant: an exit condition fails, the trigger is ignored
    assert trigger(http, instance["id"], "approve", {"approver": "J George"})["outcome"] == "ignored"
    assert trigger(http, instance["id"], "approve", {"approver": "A Boss"})["outcome"] == "applied"
    paid = trigger(http, instance["id"], "pay", {"paidAt": "2025-01-31"})
    assert paid["outcome"] == "applied" and paid["instance"]["status"] == "Complete"
    assert trigger(http, instance["id"], "update", {"amount": 1})["outcome"] == "rejected"


def test_the_same_trigger_id_twice_returns_the_first_result_and_applies_once(http: httpx.Client) -> None:
    instance = create(http)
    path = f"/tenants/acme/instances/{instance['id']}/triggers"
    first = http.post(path, json={"id": "pay-once", "topic": "update", "content": {"amount": 1}}, headers=WAIT)
    assert first.status_code == 200
    again = http.post(path, json={"id": "pay-once", "topic": "update", "content": {"amount": 999}})
    assert again.status_code == 200  # at once, without Prefer: wait: it is recorded already
    assert again.json() == first.json()
    assert again.json()["instance"]["context"]["amount"] == 1
    events = http.get(f"/tenants/acme/instances/{instance['id']}/events").json()["items"]
    assert [e["triggerId"] for e in events].count("pay-once") == 1
    # sent twice before the first is processed: still applied once
    both = [http.post(path, json={"id": "burst", "topic": "update", "content": {"amount": n}}) for n in (2, 3)]
    assert {r.status_code for r in both} <= {200, 202}
    eventually(lambda: http.get(f"/tenants/acme/instances/{instance['id']}").json()["version"] == 3)
    time.sleep(0.2)
    events = http.get(f"/tenants/acme/instances/{instance['id']}/events").json()["items"]
    assert len(events) == 3 and events[-1]["triggerId"] == "burst"


def test_trigger_errors(http: httpx.Client) -> None:
    body = problem(http.post("/tenants/acme/instances/ghost/triggers", json={"topic": "x"}), 404)
    assert "ghost" in body["detail"] and "acme" in body["detail"]
    instance = create(http)
    path = f"/tenants/acme/instances/{instance['id']}/triggers"
    errors = problem(http.post(path, json={"content": 1}), 422)["errors"]
    assert errors == [{"path": "body.topic", "message": "Field required"}]
    errors = problem(http.post(path, json={"topic": "", "subjects": [""], "id": "has space"}), 422)["errors"]
    assert {e["path"] for e in errors} == {"body.topic", "body.subjects[0]", "body.id"}
    body = problem(http.post(path, content=b'{"topic": "x"}', headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in body["detail"]


def test_prefer_wait_that_runs_out_still_answers_202(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0) as server:  # nobody processes the queue
        key = server.onboard("slow")
        with server.client(key) as http:
            start = time.monotonic()
            response = http.post("/tenants/slow/instances", json={"workflowId": "expense-claim", "context": CLAIM},
                                 headers={"Prefer": "wait=0.3"})
            assert response.status_code == 202 and time.monotonic() - start >= 0.3
            assert response.headers["preference-applied"] == "wait=0.3"
            assert server.engine.queue.depth() == 1


# ---------------------------------------------------------------------------------------------- broadcast

def test_broadcast_reaches_the_interested_instances_only(http: httpx.Client) -> None:
    subject = unique("team")
    interested = [create(http, interests=[subject])["id"] for _ in range(2)]
    other = create(http, interests=["someone-else"])["id"]
    response = http.post("/tenants/acme/triggers", json={"topic": "update", "content": {"amount": 7},
                                                         "subjects": [subject]})
    assert response.status_code == 202
    assert response.json()["subjects"] == [subject]
    for instance_id in interested:
        eventually(lambda i=instance_id: http.get(f"/tenants/acme/instances/{i}").json()["version"] == 2)
        assert http.get(f"/tenants/acme/instances/{instance_id}").json()["context"]["amount"] == 7
    time.sleep(0.2)
    assert http.get(f"/tenants/acme/instances/{other}").json()["version"] == 1
    for body in ({"topic": "update", "subjects": []}, {"topic": "update"}):
        errors = problem(http.post("/tenants/acme/triggers", json=body), 422)["errors"]
        assert errors[0]["path"] == "body.subjects"


# ---------------------------------------------------------------------------------------------- read

def test_instance_etag_and_if_none_match(http: httpx.Client) -> None:
    instance = create(http)
    path = f"/tenants/acme/instances/{instance['id']}"
    response = http.get(path)
    assert response.headers["etag"] == '"1"'
    not_modified = http.get(path, headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == '"1"'
    assert http.get(path, headers={"If-None-Match": 'W/"1", "7"'}).status_code == 304
    assert http.get(path, headers={"If-None-Match": "*"}).status_code == 304
    trigger(http, instance["id"], "update", {"amount": 2})
    changed = http.get(path, headers={"If-None-Match": '"1"'})
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"'
    body = problem(http.get("/tenants/acme/instances/ghost"), 404)
    assert body["instanceId"] == "ghost" and body["tenant"] == "acme"


def test_list_filters_and_pages_with_continuation(api_server: RunningServer) -> None:
    key = api_server.onboard("lister")
    with api_server.client(key) as http:
        ids = sorted(create(http, "lister", id=f"c-{n:02d}")["id"] for n in range(5))
        faulted = create(http, "lister", id="c-faulted", context={})["id"]
        trigger(http, ids[0], "update", {"amount": 1}, tenant="lister")
        trigger(http, ids[0], "submit", tenant="lister")
        seen: list[str] = []
        continuation = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2}
            if continuation:
                params["continuation"] = continuation
            page = http.get("/tenants/lister/instances", params=params).json()
            pages += 1
            seen += [item["id"] for item in page["items"]]
            continuation = page["continuation"]
            if continuation is None:
                break
        assert seen == sorted([*ids, faulted]) and pages == 3
        for status in ("faulted", "Faulted", "FAULTED"):
            items = http.get("/tenants/lister/instances", params={"status": status}).json()["items"]
            assert [i["id"] for i in items] == [faulted]
        by_state = http.get("/tenants/lister/instances", params={"state": "awaiting-approval"}).json()["items"]
        assert [i["id"] for i in by_state] == [ids[0]]
        both = http.get("/tenants/lister/instances", params={"workflowId": "expense-claim", "status": "waiting",
                                                             "state": "draft"}).json()["items"]
        assert [i["id"] for i in both] == ids[1:]
        assert http.get("/tenants/lister/instances", params={"workflowId": "document-review"}).json()["items"] == []
        assert problem(http.get("/tenants/lister/instances", params={"status": "asleep"}), 422)["errors"][0][
            "path"] == "query.status"
        assert problem(http.get("/tenants/lister/instances", params={"limit": 0}), 422)["errors"][0][
            "path"] == "query.limit"
        problem(http.get("/tenants/lister/instances", params={"limit": "many"}), 422)
        problem(http.get("/tenants/lister/instances", params={"continuation": "\u2603"}), 422)


def test_events_in_order_paged(http: httpx.Client) -> None:
    instance = create(http)
    for amount in range(4):
        trigger(http, instance["id"], "update", {"amount": amount})
    path = f"/tenants/acme/instances/{instance['id']}/events"
    page = http.get(path, params={"limit": 2}).json()
    assert [e["sequence"] for e in page["items"]] == [1, 2]
    assert set(page["items"][0]) == {"sequence", "type", "at", "triggerId", "data"}
    assert page["items"][0]["type"] == "Created"
    rest = http.get(path, params={"limit": 2, "continuation": page["continuation"]}).json()
    assert [e["sequence"] for e in rest["items"]] == [3, 4]
    last = http.get(path, params={"limit": 2, "continuation": rest["continuation"]}).json()
    assert [e["sequence"] for e in last["items"]] == [5] and last["continuation"] is None
    assert [e["sequence"] for e in http.get(path, params={"after": 3}).json()["items"]] == [4, 5]
    assert http.get(path, params={"after": 5}).json() == {"items": [], "continuation": None}
    problem(http.get("/tenants/acme/instances/ghost/events"), 404)
    problem(http.get(path, params={"continuation": "abc"}), 422)
    problem(http.get(path, params={"after": -1}), 422)


# ---------------------------------------------------------------------------------------------- limits, junk

def test_bodies_over_the_limit_get_413(api_server: RunningServer, http: httpx.Client) -> None:
    limit = api_server.service.settings.max_body_bytes
    big = {"workflowId": "expense-claim", "context": {"blob": "x" * limit}}
    response = http.post("/tenants/acme/instances", json=big)
    body = problem(response, 413)
    assert str(limit) in body["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed bytes are counted
        yield b'{"workflowId": "expense-claim", "context": {"blob": "'
        for _ in range(limit // 16_384 + 2):
            yield b"y" * 16_384
        yield b'"}}'

    response = http.post("/tenants/acme/instances", content=chunks(), headers={"Content-Type": "application/json"})
    problem(response, 413)
    assert "content-length" not in response.request.headers
    sample = (SAMPLES / "expense-claim.json").read_bytes()
    padded = sample[:-2] + b', "pad": "' + b"z" * limit + b'"}'
    problem(http.put("/tenants/acme/workflows/padded", content=padded, headers={"Content-Type": "application/json"}),
            413)


def test_unknown_routes_and_methods_are_problems(api_server: RunningServer, http: httpx.Client) -> None:
    with api_server.client() as anonymous:
        problem(anonymous.get("/nothing-here"), 404)
        problem(anonymous.delete("/healthz"), 405)
    problem(http.get("/tenants/acme/nothing-here"), 404)
    response = http.delete("/tenants/acme/workflows/expense-claim")
    body = problem(response, 405)
    assert "allowed" in body["detail"] and response.headers["allow"]


JUNK: list[tuple[str, Any]] = [
    ("json", None), ("json", []), ("json", "text"), ("json", 12), ("json", {"topic": None}),
    ("json", {"topic": ["a"]}), ("json", {"topic": "x", "content": {"a": [[[[[]]]]]}, "subjects": {"a": 1}}),
    ("json", {"topic": "x" * 10_000}), ("json", {"topic": "x", "id": "é"}),
    ("json", {"workflowId": "expense-claim", "context": {"n": 10 ** 400}}),
    ("json", {"workflowId": "expense-claim", "id": "a" * 500}),
    ("content", b"{"), ("content", b"\x00\x01\x02"), ("content", b'{"topic": "x", "content": 1e999}'),
    ("content", b'{"topic": "x", "content": "\\ud800"}'), ("content", b'{"topic": "x", "content": NaN}'),
    ("content", b'{"topic": "x", "content": -Infinity}'), ("content", b"[" * 50_000 + b"]" * 50_000),
    ("content", b'{"topic": "x", "content": ' + b"[" * 500 + b"]" * 500 + b"}"),
    ("content", '{"topic": "naïve ☃ \U0001f600"}'.encode()), ("content", b'{"topic": "x", "topic": "y"}'),
    ("content", b'{"workflowId": "expense-claim", "context": {"\\udfff": 1}}'),
]


@pytest.mark.parametrize(("kind", "payload"), JUNK)
def test_no_junk_input_gets_a_5xx(api_server: RunningServer, http: httpx.Client, kind: str, payload: Any) -> None:
    instance = create(http)
    targets = ["/tenants/acme/instances", f"/tenants/acme/instances/{instance['id']}/triggers",
               "/tenants/acme/triggers", "/tenants", "/tenants/acme/workflows/junk"]
    for path in targets:
        method = "PUT" if "/workflows/" in path else "POST"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"} if path == "/tenants" else {}
        if kind == "json":
            response = http.request(method, path, json=payload, headers=headers)
        else:
            headers["Content-Type"] = "application/json"
            response = http.request(method, path, content=payload, headers=headers)
        assert response.status_code < 500, (path, response.status_code, response.text)
        if response.status_code >= 400:
            problem(response, response.status_code)
    odd_queries = [("GET", "/tenants/acme/instances", {"limit": "1e9"}), ("GET", "/tenants/acme/instances",
                   {"continuation": "\u2603" * 10}), ("GET", f"/tenants/acme/instances/{instance['id']}/events",
                                                      {"after": "9" * 40}),
                   ("GET", "/tenants/acme/workflows/expense-claim", {"version": "-1"}),
                   ("GET", "/tenants/acme/workflows/expense-claim", {"version": "9" * 30}),
                   ("GET", f"/tenants/acme/instances/{instance['id']}/events", {"continuation": "9" * 30}),
                   ("GET", "/tenants/acme/instances/%00", {}), ("GET", "/tenants/acme/instances/" + "x" * 5000, {})]
    for method, path, params in odd_queries:
        response = http.request(method, path, params=params)
        assert response.status_code < 500, (path, params, response.status_code, response.text)
