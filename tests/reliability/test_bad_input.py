"""A table of bad input through the API: each gets a 4xx problem or a recorded fault — never a 5xx, never a
crashed worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RunningServer, serve_api

T = "bad"
FRAGILE = {
    "id": "fragile",
    "initialState": "open",
    "states": {"open": {"transitions": [
        {"id": "divide", "trigger": "divide", "target": "open",
         "actions": [{"type": "set-context", "values": {"q": "100 / trigger.content.n"}}]},
        {"id": "pairs", "trigger": "pairs", "target": "open",
         "actions": [{"type": "set-context", "values": {
             "pairs": "size(trigger.content.l.filter(a, trigger.content.l.exists(b, a == b + 1)))"}}]},
        {"id": "echo", "trigger": "echo", "target": "open",
         "actions": [{"type": "set-context", "values": {"echo": "trigger.content.text"}}]},
    ]}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, httpx.Client]]:
    with serve_api(tmp_path_factory.mktemp("bad"), workers=1, max_body_bytes=65536) as running:
        key = running.onboard(T, samples=False)
        with running.client(key) as http:
            assert http.put(f"/tenants/{T}/workflows/fragile", json=FRAGILE).status_code == 201
            created = http.post(f"/tenants/{T}/instances", json={"workflowId": "fragile", "id": "f-1"},
                                headers={"Prefer": "wait=10"})
            assert created.status_code == 201, created.text
            yield running, http


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


RAW = "application/json"
BAD_REQUESTS: list[tuple[str, str, str, Any, dict[str, str]]] = [
    # (name, method, path, body: bytes | JSON, headers)
    ("malformed JSON", "POST", "/instances/f-1/triggers", b'{"topic": "echo", ', {}),
    ("not an object", "POST", "/instances/f-1/triggers", b"[1, 2, 3]", {}),
    ("wrong type of topic", "POST", "/instances/f-1/triggers", {"topic": 42}, {}),
    ("missing topic", "POST", "/instances/f-1/triggers", {"content": {}}, {}),
    ("unknown field", "POST", "/instances/f-1/triggers", {"topic": "echo", "colour": "red"}, {}),
    ("huge body", "POST", "/instances/f-1/triggers", {"topic": "echo", "content": {"text": "x" * 200_000}}, {}),
    ("deep nesting", "POST", "/instances/f-1/triggers", {"topic": "echo", "content": deep(200)}, {}),
    ("NaN", "POST", "/instances/f-1/triggers", b'{"topic": "echo", "content": NaN}', {}),
    ("lone surrogate", "POST", "/instances/f-1/triggers", b'{"topic": "echo", "content": {"text": "\\ud800"}}', {}),
    ("unknown instance", "POST", "/instances/nope/triggers", {"topic": "echo"}, {}),
    ("unknown workflow", "POST", "/instances", {"workflowId": "nope"}, {}),
    ("bad instance id", "POST", "/instances", {"workflowId": "fragile", "id": "../../etc"}, {}),
    ("form body", "POST", "/instances/f-1/triggers", b"topic=echo", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("invalid CEL", "PUT", "/workflows/broken", {"id": "broken", "initialState": "a", "states": {"a": {
        "transitions": [{"id": "t", "trigger": "go", "target": "a",
                         "conditions": [{"type": "expression", "expression": "context.(("}]}]}}}, {}),
    ("definition id mismatch", "PUT", "/workflows/other", FRAGILE, {}),
    ("negative paging", "GET", "/instances?limit=-1", None, {}),
    ("huge paging", "GET", "/instances?limit=99999999999999999999", None, {}),
    ("bad continuation", "GET", "/instances?continuation=%00%ff", None, {}),
    ("bad status", "GET", "/instances?status=sleeping", None, {}),
    ("events of unknown", "GET", "/instances/nope/events", None, {}),
    ("bad sequence", "GET", "/instances/f-1/events?after=-5", None, {}),
    ("prefer junk", "POST", "/instances/f-1/triggers", {"topic": "echo", "content": {"text": "a"}},
     {"Prefer": "wait=banana, respond-async, wait=99999999999"}),
    ("recover junk", "POST", "/instances/f-1/recover", {"mode": 7}, {}),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "headers"), BAD_REQUESTS,
                         ids=[row[0] for row in BAD_REQUESTS])
def test_bad_input_gets_a_problem_not_a_5xx(server: tuple[RunningServer, httpx.Client], name: str, method: str,
                                            path: str, body: Any, headers: dict[str, str]) -> None:
    _, http = server
    content = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    request_headers = {"Content-Type": RAW, **headers} if content is not None else headers
    response = http.request(method, f"/tenants/{T}{path}", content=content, headers=request_headers)
    assert response.status_code < 500, (name, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), name
        problem = response.json()
        assert {"type", "title", "status", "detail"} <= set(problem) and problem["detail"], problem


@pytest.mark.parametrize("header", ["Bearer a\r\nX-Injected: 1", "Bearer \x00", "Basic Zm9vOmJhcg==", "Bearer " + "k" * 10_000])
def test_header_injection_and_junk_keys_are_401(server: tuple[RunningServer, httpx.Client], header: str) -> None:
    running, _ = server
    import socket

    host, port = running.url.removeprefix("http://").split(":")
    request = (f"GET /tenants/{T}/instances HTTP/1.1\r\nHost: {host}\r\nAuthorization: {header}\r\n"
               "Connection: close\r\n\r\n").encode("latin-1", "replace")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"X-Injected" not in answer.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize(("topic", "content", "error"), [
    ("divide", {"n": 0}, "DivisionByZero"),
    ("divide", {}, "NoSuchField"),
    ("divide", {"n": "two"}, None),
    ("pairs", {"l": list(range(5000))}, "ExpressionBudgetExceeded"),
])
def test_bad_input_at_run_time_is_a_recorded_fault(server: tuple[RunningServer, httpx.Client], topic: str,
                                                   content: Any, error: str | None) -> None:
    _, http = server
    instance_id = f"f-{topic}-{len(json.dumps(content))}-{error}"
    http.post(f"/tenants/{T}/instances", json={"workflowId": "fragile", "id": instance_id},
              headers={"Prefer": "wait=10"})
    response = http.post(f"/tenants/{T}/instances/{instance_id}/triggers", json={"topic": topic, "content": content},
                         headers={"Prefer": "wait=20"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["outcome"] == "faulted"
    if error is not None:
        assert result["instance"]["fault"]["errorType"] == error


@pytest.mark.parametrize("text", ["ünïcödé ✓", "🙂👩‍👩‍👧", "\u202egnirts desrever", "\u0000nul", "a" * 10_000,
                                  "line\nbreak", "<script>alert(1)</script>"])
def test_unicode_edge_cases_round_trip(server: tuple[RunningServer, httpx.Client], text: str) -> None:
    _, http = server
    response = http.post(f"/tenants/{T}/instances/f-1/triggers", json={"topic": "echo", "content": {"text": text}},
                         headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.text
    assert response.json()["instance"]["context"]["echo"] == text


def test_the_worker_survived_it_all(server: tuple[RunningServer, httpx.Client]) -> None:
    running, http = server
    assert all(thread.is_alive() for thread in running.workers.threads)
    response = http.post(f"/tenants/{T}/instances/f-1/triggers", json={"topic": "echo", "content": {"text": "ok"}},
                         headers={"Prefer": "wait=10"})
    assert response.json()["outcome"] == "applied"
    assert running.engine.queue.poisoned() == []
