"""Timers, scheduled triggers and migration through the HTTP API of a real server (uvicorn, SQLite, workers).

Times are never asserted against the wall clock: "not before" compares the recorded firing time with the recorded
due time, and every wait is for an event to be recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import RunningServer, serve_api
from tests.webhook_receiver import wait_until

pytestmark = pytest.mark.integration

T = "clock"
WAIT = {"Prefer": "wait=10"}

APPROVAL: dict[str, Any] = {
    "id": "approval", "initialState": "awaiting",
    "states": {
        "awaiting": {
            "timeouts": [{"id": "escalate", "after": "PT2S", "trigger": {"topic": "escalate",
                                                                        "content": {"reason": "timeout"}}}],
            "transitions": [{"id": "escalate", "trigger": "escalate", "target": "escalated"},
                            {"id": "approve", "trigger": "approve", "target": "approved"}],
        },
        "escalated": {"transitions": [{"id": "approve-late", "trigger": "approve", "target": "approved"}]},
        "approved": {},
    },
}
REMINDER: dict[str, Any] = {
    "id": "reminder", "initialState": "waiting",
    "states": {
        "waiting": {
            "timeouts": [{"id": "remind", "after": "PT1S", "repeat": True, "trigger": {"topic": "remind"}}],
            "transitions": [{"id": "remind", "trigger": "remind", "target": "waiting",
                             "actions": [{"type": "set-context",
                                          "values": {"reminded": "has(context.reminded) ? context.reminded + 1 : 1"}}]},
                            {"id": "done", "trigger": "done", "target": "finished"}],
        },
        "finished": {},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("timers")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    key = server.onboard(T, samples=False)
    with server.client(key) as client:
        for definition in (APPROVAL, REMINDER):
            assert client.put(f"/tenants/{T}/workflows/{definition['id']}", json=definition).status_code in (200, 201)
        yield client


def create(http: httpx.Client, workflow: str, instance_id: str, **context: Any) -> dict[str, Any]:
    response = http.post(f"/tenants/{T}/instances", json={"workflowId": workflow, "id": instance_id,
                                                          "context": context}, headers=WAIT)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def events(http: httpx.Client, instance_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/tenants/{T}/instances/{instance_id}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in items if event["type"] == kind]


def test_a_two_second_timer_fires_once_and_not_before_it_is_due(http: httpx.Client, server: RunningServer) -> None:
    created = create(http, "approval", "fires")
    (timer,) = created["timers"]
    assert (timer["timerId"], timer["kind"], timer["trigger"]["id"]) == ("escalate", "timeout", "fires:1:escalate:1")
    wait_until(lambda: of_type(events(http, "fires"), "TimerFired"), timeout=20, what="the timer to fire")
    wait_until(lambda: server.engine.queue.depth() == 0, timeout=10, what="the queue to empty")
    history = events(http, "fires")
    (fired,) = of_type(history, "TimerFired")
    assert fired["at"] >= fired["data"]["dueAt"] == timer["dueAt"]
    assert fired["triggerId"] == "fires:1:escalate:1"
    assert http.get(f"/tenants/{T}/instances/fires").json()["state"] == "escalated"


def test_leaving_the_state_cancels_the_timer_and_its_late_firing_is_recorded_not_applied(
        http: httpx.Client) -> None:
    create(http, "approval", "leaves")
    response = http.post(f"/tenants/{T}/instances/leaves/triggers", json={"topic": "approve"}, headers=WAIT)
    assert response.json()["outcome"] == "applied"
    history = events(http, "leaves")
    (cancelled,) = of_type(history, "TimerCancelled")
    assert cancelled["data"]["timerId"] == "escalate"
    late = wait_until(lambda: [e for e in events(http, "leaves") if e["triggerId"] == "leaves:1:escalate:1"],
                      timeout=20, what="the cancelled timer's firing to be recorded")
    assert [e["type"] for e in late] == ["TriggerIgnored"]
    assert not of_type(events(http, "leaves"), "TimerFired")
    assert http.get(f"/tenants/{T}/instances/leaves").json()["state"] == "approved"


def test_a_repeating_timer_fires_every_second_then_stops_when_the_state_is_left(http: httpx.Client) -> None:
    create(http, "reminder", "repeats")
    wait_until(lambda: len(of_type(events(http, "repeats"), "TimerFired")) >= 3, timeout=30,
               what="three reminders")
    assert http.post(f"/tenants/{T}/instances/repeats/triggers", json={"topic": "done"},
                     headers=WAIT).json()["outcome"] == "applied"
    history = events(http, "repeats")
    fired = of_type(history, "TimerFired")
    assert [e["data"]["n"] for e in fired] == list(range(1, len(fired) + 1))
    pending = len(fired) + 1  # the firing scheduled last is cancelled by leaving; it comes, and is only recorded
    wait_until(lambda: [e for e in events(http, "repeats") if e["triggerId"] == f"repeats:1:remind:{pending}"],
               timeout=20, what="the last firing to be recorded as stale")
    after = events(http, "repeats")
    assert len(of_type(after, "TimerFired")) == len(fired)
    instance = http.get(f"/tenants/{T}/instances/repeats").json()
    assert instance["context"]["reminded"] == len(fired) and instance["timers"] == []
    for event in fired:
        assert event["at"] >= event["data"]["dueAt"]


def test_a_scheduled_trigger_waits_for_its_time_and_a_cancelled_one_never_applies(http: httpx.Client) -> None:
    create(http, "approval", "later")
    not_before = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    response = http.post(f"/tenants/{T}/instances/later/triggers",
                         json={"id": "approve-soon", "topic": "approve", "notBefore": not_before})
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/tenants/{T}/instances/later/scheduled/approve-soon"
    again = http.post(f"/tenants/{T}/instances/later/triggers",
                      json={"id": "approve-soon", "topic": "approve", "notBefore": not_before})
    assert again.status_code == 202  # idempotent: scheduled once
    cancel_me = http.post(f"/tenants/{T}/instances/later/triggers",
                          json={"id": "escalate-me", "topic": "escalate", "delay": "PT1S"})
    assert cancel_me.status_code == 202
    listed = http.get(f"/tenants/{T}/instances/later/scheduled", params={"kind": "trigger"}).json()["items"]
    assert [item["timerId"] for item in listed] == ["escalate-me", "approve-soon"]
    assert http.delete(f"/tenants/{T}/instances/later/scheduled/escalate-me").status_code == 204
    assert http.delete(f"/tenants/{T}/instances/later/scheduled/escalate-me").status_code == 204  # idempotent
    again = http.post(f"/tenants/{T}/instances/later/triggers",
                      json={"id": "escalate-me", "topic": "escalate", "delay": "PT1S"})
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]  # not silently "scheduled"
    missing = http.delete(f"/tenants/{T}/instances/later/scheduled/never-scheduled")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert [item["timerId"] for item in http.get(f"/tenants/{T}/instances/later/scheduled",
                                                 params={"kind": "trigger"}).json()["items"]] == ["approve-soon"]
    applied = wait_until(lambda: [e for e in events(http, "later") if e["triggerId"] == "approve-soon"
                                  and e["type"] == "TransitionApplied"], timeout=20, what="the scheduled trigger")
    (fired,) = [e for e in events(http, "later") if e["type"] == "TimerFired"]
    assert fired["at"] >= fired["data"]["dueAt"] and fired["data"]["dueAt"] <= applied[0]["at"]
    ignored = wait_until(lambda: [e for e in events(http, "later") if e["triggerId"] == "escalate-me"], timeout=20,
                         what="the cancelled trigger's firing to be recorded")
    assert [e["type"] for e in ignored] == ["TriggerIgnored"]
    assert http.get(f"/tenants/{T}/instances/later").json()["state"] == "approved"


def test_scheduling_problems_are_problems(http: httpx.Client) -> None:
    create(http, "approval", "problems")
    both = http.post(f"/tenants/{T}/instances/problems/triggers",
                     json={"topic": "approve", "delay": "PT1H", "notBefore": "2030-01-01T00:00:00Z"})
    assert both.status_code == 422 and "not both" in both.text
    for bad in ({"delay": "P1M"}, {"delay": "soon"}, {"notBefore": "tomorrow"}, {"notBefore": "2030-01-01T00:00:00"}):
        response = http.post(f"/tenants/{T}/instances/problems/triggers", json={"topic": "approve", **bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["errors"], bad
    far = http.post(f"/tenants/{T}/instances/problems/triggers", json={"topic": "approve", "delay": "P5000D"})
    assert far.status_code == 422 and "days away" in far.json()["detail"]
    http.post(f"/tenants/{T}/instances/problems/triggers", json={"topic": "approve"}, headers=WAIT)
    done = http.post(f"/tenants/{T}/instances/problems/triggers", json={"topic": "approve", "delay": "PT1H"})
    assert done.status_code == 409 and "Complete" in done.json()["detail"]
    timeout = http.delete(f"/tenants/{T}/instances/fires/scheduled/escalate")
    assert timeout.status_code in (404, 409)
    unknown = http.get(f"/tenants/{T}/instances/nobody/scheduled")
    assert unknown.status_code == 404


def test_a_scheduled_broadcast_is_delivered_at_its_time(http: httpx.Client) -> None:
    response = http.post(f"/tenants/{T}/instances", json={"workflowId": "approval", "id": "listener",
                                                           "interests": ["team:a"]}, headers=WAIT)
    assert response.status_code == 201
    sent = http.post(f"/tenants/{T}/triggers", json={"id": "broadcast-later", "topic": "approve",
                                                     "subjects": ["team:a"], "delay": "PT1S"})
    assert sent.status_code == 202 and sent.json()["notBefore"]
    applied = wait_until(lambda: [e for e in events(http, "listener") if e["triggerId"] == "broadcast-later"],
                         timeout=20, what="the scheduled broadcast")
    assert applied[0]["at"] >= sent.json()["notBefore"]


# ---------------------------------------------------------------------------------------------- migration

def test_migrating_one_instance_and_a_dry_run(http: httpx.Client) -> None:
    v1 = {"id": "claim", "initialState": "review",
          "states": {"review": {"transitions": [{"id": "approve", "trigger": "approve", "target": "done"}]},
                     "done": {}}}
    v2 = {"id": "claim", "initialState": "checking",
          "states": {"checking": {"transitions": [{"id": "approve", "trigger": "approve", "target": "done"},
                                                  {"id": "query", "trigger": "query", "target": "queried"}]},
                     "queried": {"transitions": [{"id": "answer", "trigger": "answer", "target": "checking"}]},
                     "done": {}}}
    http.put(f"/tenants/{T}/workflows/claim", json=v1)
    create(http, "claim", "m-1", amount=5)
    http.put(f"/tenants/{T}/workflows/claim", json=v2)

    refused = http.post(f"/tenants/{T}/instances/m-1/migrate", json={"toVersion": 2, "reason": "v2"})
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["path"] == "$.stateMap" and "review" in refused.json()["detail"]

    dry = http.post(f"/tenants/{T}/instances/m-1/migrate",
                    json={"toVersion": 2, "stateMap": {"review": "checking"}, "reason": "v2", "dryRun": True})
    assert dry.status_code == 200 and dry.json()["outcome"] == "would-migrate"
    assert dry.json()["instance"]["workflowVersion"] == 2
    assert http.get(f"/tenants/{T}/instances/m-1").json()["workflowVersion"] == 1  # a dry run changes nothing

    done = http.post(f"/tenants/{T}/instances/m-1/migrate",
                     json={"toVersion": 2, "stateMap": {"review": "checking"}, "contextPatch": {"amount": None},
                           "reason": "renamed review", "by": "ops"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["outcome"] == "migrated"
    assert (body["instance"]["workflowVersion"], body["instance"]["state"], body["instance"]["context"]) == (
        2, "checking", {})
    (migrated,) = of_type(events(http, "m-1"), "Migrated")
    assert migrated["data"]["by"].startswith("ops") and migrated["data"]["reason"] == "renamed review"
    later = http.post(f"/tenants/{T}/instances/m-1/triggers", json={"topic": "query"}, headers=WAIT)
    assert later.json()["outcome"] == "applied" and later.json()["instance"]["state"] == "queried"  # v2 decides


def test_bulk_migration_with_a_dry_run_first(http: httpx.Client) -> None:
    v1 = {"id": "bulk", "initialState": "a",
          "states": {"a": {"transitions": [{"id": "go", "trigger": "go", "target": "b"}]},
                     "b": {"transitions": [{"id": "end", "trigger": "end", "target": "c"}]}, "c": {}}}
    v2 = {**v1, "displayName": "Bulk v2"}
    http.put(f"/tenants/{T}/workflows/bulk", json=v1)
    for n in range(3):
        create(http, "bulk", f"b-{n}")
    http.post(f"/tenants/{T}/instances/b-2/triggers", json={"topic": "go"}, headers=WAIT)
    http.put(f"/tenants/{T}/workflows/bulk", json=v2)
    request = {"filter": {"workflowId": "bulk", "version": 1, "state": "a"}, "toVersion": 2, "reason": "v2",
               "dryRun": True}
    dry = http.post(f"/tenants/{T}/migrations", json=request)
    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == ["b-0", "b-1"]
    assert {r["outcome"] for r in dry.json()["results"]} == {"would-migrate"}
    assert http.get(f"/tenants/{T}/instances/b-0").json()["workflowVersion"] == 1
    real = http.post(f"/tenants/{T}/migrations", json={**request, "dryRun": False, "filter": {"workflowId": "bulk"}})
    assert {r["instanceId"]: r["outcome"] for r in real.json()["results"]} == {
        "b-0": "migrated", "b-1": "migrated", "b-2": "migrated"}
    again = http.post(f"/tenants/{T}/migrations", json={**request, "dryRun": True, "filter": {"workflowId": "bulk"}})
    assert {r["outcome"] for r in again.json()["results"]} == {"refused"}  # on version 2 already


def test_the_server_keeps_the_timer_across_a_restart(tmp_path: Path) -> None:
    with serve_api(tmp_path) as first:
        key = first.onboard(T, samples=False)
        with first.client(key) as client:
            client.put(f"/tenants/{T}/workflows/approval", json=APPROVAL)
            create(client, "approval", "restart")
    with serve_api(tmp_path) as second, second.client(key) as client:
        wait_until(lambda: of_type(events(client, "restart"), "TimerFired"), timeout=20, what="the timer to fire")
        assert client.get(f"/tenants/{T}/instances/restart").json()["state"] == "escalated"
