"""Ordering made explicit: triggers to one instance are applied in no guaranteed order unless the client asks, with
`If-Match: "<version>"` (or `expectedVersion`), for a trigger to apply only at the version it saw."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import RunningServer, serve_api

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("ordering")) as running:
        yield running


@pytest.fixture
def claim(server: RunningServer) -> Iterator[tuple[httpx.Client, str]]:
    tenant = f"o{uuid.uuid4().hex[:8]}"
    key = server.onboard(tenant)
    with server.client(key) as http:
        created = http.post(f"/tenants/{tenant}/instances", headers={"Prefer": "wait=10"},
                            json={"workflowId": "expense-claim", "id": "c1", "context": {"claimant": "Ann"}})
        assert created.status_code == 201 and created.headers["etag"] == '"1"'
        yield http, f"/tenants/{tenant}/instances/c1"


def test_if_match_applies_at_that_version_and_refuses_a_stale_one_with_412(claim: tuple[httpx.Client, str]) -> None:
    http, path = claim
    wait = {"Prefer": "wait=10"}
    applied = http.post(f"{path}/triggers", headers={**wait, "If-Match": '"1"'},
                        json={"id": "u1", "topic": "update", "content": {"amount": 5}})
    assert applied.status_code == 200 and applied.json()["outcome"] == "applied"
    assert applied.json()["instance"]["version"] == 2

    stale = http.post(f"{path}/triggers", headers={**wait, "If-Match": '"1"'},
                      json={"id": "u2", "topic": "update", "content": {"amount": 9}})
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    problem = stale.json()
    assert problem["type"] == "urn:waymark:problem:version-mismatch"
    assert (problem["expectedVersion"], problem["version"], problem["outcome"]) == (1, 2, "rejected")
    assert problem["triggerId"] == "u2" and stale.headers["etag"] == '"3"'
    assert "expected the instance at version 1; it is at version 2" in problem["detail"]
    # Sent again, the same id answers the same (idempotent), and the rejection is in the history with its reason.
    again = http.post(f"{path}/triggers", headers={"If-Match": '"1"'},
                      json={"id": "u2", "topic": "update", "content": {"amount": 9}})
    assert again.status_code == 412 and again.json()["sequence"] == 3
    events = http.get(f"{path}/events").json()["items"]
    assert [(e["type"], e["data"].get("reason")) for e in events[1:]] == [
        ("TransitionApplied", None), ("TriggerRejected", "version-mismatch")]
    assert http.get(path).json()["context"]["amount"] == 5  # the stale update changed nothing

    # expectedVersion in the body is the same condition; without Prefer: wait the answer is 202 as always.
    body = http.post(f"{path}/triggers", json={"id": "u3", "topic": "update", "content": {"amount": 11},
                                               "expectedVersion": 3}, headers=wait)
    assert body.status_code == 200 and body.json()["instance"]["context"]["amount"] == 11
    queued = http.post(f"{path}/triggers", json={"id": "u4", "topic": "update", "expectedVersion": 1})
    assert queued.status_code == 202


def test_a_client_that_chains_versions_gets_its_order(claim: tuple[httpx.Client, str]) -> None:
    """Each trigger sent only once the previous one answered, each conditional on the version it produced: the
    history is exactly the client's order, whatever the workers do."""
    http, path = claim
    version = 1
    for n in range(8):
        answer = http.post(f"{path}/triggers", headers={"Prefer": "wait=10", "If-Match": f'"{version}"'},
                           json={"id": f"step-{n}", "topic": "update", "content": {"amount": n + 1}})
        assert answer.status_code == 200, answer.text
        version = answer.json()["instance"]["version"]
    events = http.get(f"{path}/events").json()["items"]
    assert [e["triggerId"] for e in events[1:]] == [f"step-{n}" for n in range(8)]


@pytest.mark.parametrize(("header", "body", "status"), [
    ('W/"1"', {}, 400), ("1", {}, 400), ('"1", "2"', {}, 400), ('"x"', {}, 400),
    ('"1"', {"expectedVersion": 2}, 422), (None, {"expectedVersion": -1}, 422), (None, {"expectedVersion": "1"}, 422),
])
def test_a_malformed_condition_is_refused(claim: tuple[httpx.Client, str], header: str | None,
                                          body: dict[str, object], status: int) -> None:
    http, path = claim
    headers = {"Content-Type": "application/json", **({"If-Match": header} if header is not None else {})}
    refused = http.post(f"{path}/triggers", headers=headers, content=json.dumps({"topic": "update", **body}))
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
