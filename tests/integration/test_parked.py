"""Parked commands on the local stack (`waymark serve`'s app, SQLite, the queue workers): 100 commands that fail on
every delivery, across 3 tenants, are parked each in its own tenant's file; each tenant lists exactly its own, pages
through them, filters them, replays them by filter once they can succeed — and the instances' histories show them
applied. Malformed commands are parked at once with their body. Another tenant's key sees none of it."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.domain import Trigger
from engine.service.commands import SendTrigger, to_message
from tests.integration.conftest import RunningServer, serve_api
from tests.webhook_receiver import wait_until

# Each tenant's triggers for instances that do not exist yet: retried, then parked on the last delivery (2 here).
SPREAD = {"t1": 50, "t2": 30, "t3": 20}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("parked"), max_dequeue_count=2) as running:
        yield running


def _parked_all(http: httpx.Client, tenant: str, **params: Any) -> list[dict[str, Any]]:
    """Every parked command of the tenant, page by page (10 a page)."""
    items: list[dict[str, Any]] = []
    continuation = None
    while True:
        page = http.get(f"/tenants/{tenant}/parked", params={**params, "limit": 10,
                                                             **({"continuation": continuation} if continuation else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 10
        items += body["items"]
        continuation = body["continuation"]
        if continuation is None:
            return items


def test_a_hundred_parked_commands_across_three_tenants(server: RunningServer) -> None:
    run = uuid.uuid4().hex[:6]
    tenants = {f"{name}{run}": count for name, count in SPREAD.items()}
    keys = {tenant: server.onboard(tenant) for tenant in tenants}
    queue = server.engine.queue
    for tenant, count in tenants.items():
        for n in range(count):
            instance = f"late-{n % 5}"
            queue.send(to_message(SendTrigger(tenant, instance, Trigger("update", f"{tenant}-u{n}",
                                                                        {"amount": n + 1}))))

    def parked_count(tenant: str) -> int:
        with server.client(keys[tenant]) as http:
            return len(_parked_all(http, tenant))

    wait_until(lambda: all(parked_count(t) == c for t, c in tenants.items()), timeout=60,
               what="every failing command parked")
    assert queue.poisoned() == [] and queue.depth() == 0

    for tenant, count in tenants.items():
        with server.client(keys[tenant]) as http:
            listed = _parked_all(http, tenant)
            # Exactly its own, each once, in parking order, with what went wrong.
            assert sorted(p["triggerId"] for p in listed) == sorted(f"{tenant}-u{n}" for n in range(count))
            assert [p["parkedAt"] for p in listed] == sorted(p["parkedAt"] for p in listed)
            first = listed[0]
            assert (first["reason"], first["deliveryCount"], first["errorType"]) == ("failed", 2, "InstanceNotFound")
            assert first["body"]["tenant"] == tenant and first["kind"] == "trigger"
            assert http.get(f"/tenants/{tenant}/parked/{first['id']}").json() == first
            of_one = _parked_all(http, tenant, instanceId="late-0")
            assert {p["instanceId"] for p in of_one} == {"late-0"} and len(of_one) == count // 5
            assert _parked_all(http, tenant, reason="malformed") == []
            # Another tenant's key sees nothing of it.
            other = next(t for t in tenants if t != tenant)
            assert http.get(f"/tenants/{other}/parked").status_code == 403

    # The instances come to exist; each tenant replays by filter — one instance first (dry run, then for real),
    # then the rest by reason.
    for tenant, count in tenants.items():
        with server.client(keys[tenant]) as http:
            for n in range(5):
                created = http.post(f"/tenants/{tenant}/instances", headers={"Prefer": "wait=10"},
                                    json={"workflowId": "expense-claim", "id": f"late-{n}",
                                          "context": {"claimant": "Ann"}})
                assert created.status_code == 201, created.text
            dry = http.post(f"/tenants/{tenant}/parked/requeue",
                            json={"filter": {"instanceId": "late-0"}, "dryRun": True}).json()
            assert dry["dryRun"] and len(dry["matched"]) == count // 5 and dry["results"] == []
            assert len(_parked_all(http, tenant)) == count  # nothing changed
            one = http.post(f"/tenants/{tenant}/parked/requeue", json={"filter": {"instanceId": "late-0"}}).json()
            assert [r["outcome"] for r in one["results"]] == ["applied"] * (count // 5)
            rest = http.post(f"/tenants/{tenant}/parked/requeue",
                             json={"filter": {"reason": "failed"}, "limit": 1000}).json()
            assert len(rest["results"]) == count - count // 5
            assert {r["outcome"] for r in rest["results"]} == {"applied"}
            assert _parked_all(http, tenant) == []
            # The histories show every parked trigger applied, once, in the order they were parked.
            for n in range(5):
                events = http.get(f"/tenants/{tenant}/instances/late-{n}/events").json()["items"]
                applied = [e["triggerId"] for e in events if e["type"] == "TransitionApplied"]
                expected = [f"{tenant}-u{m}" for m in range(count) if m % 5 == n]
                assert sorted(applied) == sorted(expected) and len(applied) == len(set(applied))
            # Replaying again (a retry of the operator's request) changes nothing.
            assert http.post(f"/tenants/{tenant}/parked/requeue", json={"all": True}).json()["matched"] == []
    # Each tenant's records were in its own file.
    for tenant in tenants:
        with sqlite3.connect(server.data_dir / "tenants" / f"{tenant}.db") as db:
            assert db.execute("SELECT count(*) FROM parked").fetchone() == (0,)


def test_a_malformed_command_is_parked_at_once_with_its_body_and_can_be_discarded(server: RunningServer) -> None:
    tenant = f"m{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant)
    body = {"kind": "teleport", "tenant": tenant, "instanceId": "c-1", "payload": {"x": 1}}
    server.engine.queue.send(body)
    with server.client(key) as http:
        [parked] = wait_until(lambda: _parked_all(http, tenant), what="the malformed command parked")
        assert (parked["reason"], parked["deliveryCount"], parked["body"]) == ("malformed", 1, body)
        assert "unknown command kind 'teleport'" in parked["detail"]
        # Replaying it changes nothing: it is still malformed, and stays parked with the new failure.
        again = http.post(f"/tenants/{tenant}/parked/{parked['id']}/requeue").json()
        assert again["outcome"] == "failed" and again["errorType"] == "MalformedCommand"
        assert len(_parked_all(http, tenant)) == 1
        # A bulk action needs a filter or all; discard by filter, dry run first.
        refused = http.post(f"/tenants/{tenant}/parked/discard", json={})
        assert refused.status_code == 422 and "all" in refused.json()["detail"]
        dry = http.post(f"/tenants/{tenant}/parked/discard", json={"filter": {"reason": "malformed"},
                                                                   "dryRun": True}).json()
        assert [m["id"] for m in dry["matched"]] == [parked["id"]] and len(_parked_all(http, tenant)) == 1
        assert http.delete(f"/tenants/{tenant}/parked/{parked['id']}").status_code == 204
        assert http.get(f"/tenants/{tenant}/parked/{parked['id']}").status_code == 404
        bad = http.get(f"/tenants/{tenant}/parked", params={"since": "yesterday"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert http.get(f"/tenants/{tenant}/parked", params={"reason": "lost"}).status_code == 422


def test_openapi_describes_the_parked_routes(server: RunningServer) -> None:
    with server.admin() as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert {"/tenants/{tenant}/parked", "/tenants/{tenant}/parked/{parked_id}",
            "/tenants/{tenant}/parked/{parked_id}/requeue", "/tenants/{tenant}/parked/requeue",
            "/tenants/{tenant}/parked/discard"} <= set(paths)
    assert json.dumps(paths["/tenants/{tenant}/parked/requeue"]["post"]).count("BulkParkedRequest") >= 1


def test_the_local_queues_poison_is_moved_to_the_tenants_parked_store(tmp_path: Any) -> None:
    """A worker that died on each delivery leaves the message to the SQLite queue's poison table; the drain (the
    serve's and `waymark worker`'s, every minute) moves it to the tenant's parked store — a message naming no
    tenant stays for the admin."""
    from engine.hosting.runtime import sqlite_engine

    engine = sqlite_engine(tmp_path, max_dequeue_count=2)
    try:
        engine.events.ping("acme")  # the tenant's file exists
        ours = to_message(SendTrigger("acme", "c1", Trigger("update", "u1", {"amount": 1})))
        engine.queue.send(ours)
        engine.queue.send({"kind": "trigger"})
        for _ in range(2):  # delivered, never completed (the worker died each time)
            assert len(engine.queue.receive(max_messages=10, visibility_timeout=0)) == 2
        assert engine.queue.receive(max_messages=10) == [] and len(engine.queue.poisoned()) == 2
        assert engine.parked.drain_poison(engine.queue) == 1
        [parked] = engine.parked.list("acme").items
        assert (parked.reason, parked.delivery_count, dict(parked.body)) == ("poisoned", 2, ours)
        assert [m.body for m in engine.queue.poisoned()] == [{"kind": "trigger"}]
    finally:
        engine.parked_store.close()
        engine.queue.close()
        engine.events.close()  # type: ignore[attr-defined]
        engine.definitions.close()  # type: ignore[attr-defined]
