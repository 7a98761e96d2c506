"""Timers and scheduled triggers on the Azure stack: function_app.py with real `azure.functions` objects, Azurite's
queue (visibility delays) and cosmosdb-server (the events, and the `timers` container of timers due past the
queue's limit). The 7-day limit is compressed to 2 s through `WAYMARK_TIMER_QUEUE_MAX_DELAY_SECONDS`.

Nothing asserts a wall-clock time: "not before" compares recorded times with recorded due times."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.domain import parse_time
from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.harness import HostQueue, function_app, functions, host_message, http
from tests.webhook_receiver import wait_until

TENANT = "acme"
LIMIT = 2  # seconds: the queue's visibility limit, compressed (7 days on Azure)

WORKFLOW = {
    "id": "approval", "initialState": "awaiting",
    "states": {
        "awaiting": {
            "timeouts": [{"id": "escalate", "after": "PT1.5S", "trigger": {"topic": "escalate"}}],
            "transitions": [{"id": "escalate", "trigger": "escalate", "target": "escalated"},
                            {"id": "approve", "trigger": "approve", "target": "approved"}],
        },
        "escalated": {"transitions": [{"id": "approve-late", "trigger": "approve", "target": "approved"}]},
        "approved": {},
    },
}
LONG = {
    "id": "long", "initialState": "waiting",
    "states": {"waiting": {"timeouts": [{"id": "expire", "after": "PT5S", "trigger": {"topic": "expire"}}],
                           "transitions": [{"id": "expire", "trigger": "expire", "target": "expired"}]},
               "expired": {}},
}
REMINDER = {
    "id": "reminder", "initialState": "waiting",
    "states": {"waiting": {"timeouts": [{"id": "remind", "after": "PT1S", "repeat": True,
                                         "trigger": {"topic": "remind"}}],
                           "transitions": [{"id": "remind", "trigger": "remind", "target": "waiting"},
                                           {"id": "done", "trigger": "done", "target": "finished"}]},
               "finished": {}},
}


@pytest.fixture
def azure(make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount,
          monkeypatch: pytest.MonkeyPatch) -> tuple[AzureEnv, HostQueue, str]:
    env = make_env(cosmos_account.server.endpoint)
    monkeypatch.setenv("WAYMARK_TIMER_QUEUE_MAX_DELAY_SECONDS", str(LIMIT))
    app_host()
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT})
    assert created.status == 201, created.body
    key = created.json()["key"]
    for definition in (WORKFLOW, LONG, REMINDER):
        assert http("PUT", f"/tenants/{TENANT}/workflows/{definition['id']}", key=key,
                    body=definition).status in (200, 201)
    queue = env.host_queue(visibility_timeout=30)
    return env, queue, key


def pump(queue: HostQueue, until: Callable[[], Any], *, timeout: float = 20, what: str) -> Any:
    """Play the Functions host: deliver whatever the queue shows, until `until()` holds."""
    def step() -> Any:
        queue.deliver_all()
        return until()

    return wait_until(step, timeout=timeout, what=what)


def events(key: str, instance_id: str) -> list[dict[str, Any]]:
    response = http("GET", f"/tenants/{TENANT}/instances/{instance_id}/events?limit=1000", key=key)
    assert response.status == 200, response.body
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in items if e["type"] == kind]


def create(queue: HostQueue, key: str, workflow: str, instance_id: str, *interests: str) -> None:
    accepted = http("POST", f"/tenants/{TENANT}/instances", key=key,
                    body={"workflowId": workflow, "id": instance_id, "interests": list(interests)})
    assert accepted.status == 202, accepted.body
    pump(queue, lambda: http("GET", f"/tenants/{TENANT}/instances/{instance_id}", key=key).status == 200,
         what="the creation")


def test_a_timer_fires_once_through_a_delayed_message_even_across_a_restart_of_the_app(
        azure: tuple[AzureEnv, HostQueue, str], app_host: Any) -> None:
    _, queue, key = azure
    create(queue, key, "approval", "fires")
    assert queue.depth() == 1  # the firing, hidden on the queue until it is due
    function_app().waymark.close()  # the Function app restarts: nothing of the timer was in the process
    app_host()
    (fired,) = pump(queue, lambda: of_type(events(key, "fires"), "TimerFired"), what="the timer")
    assert fired["at"] >= fired["data"]["dueAt"] and fired["triggerId"] == "fires:1:escalate:1"
    assert http("GET", f"/tenants/{TENANT}/instances/fires", key=key).json()["state"] == "escalated"
    assert queue.depth() == 0


def test_leaving_first_cancels_and_the_late_firing_is_only_recorded(azure: tuple[AzureEnv, HostQueue, str]) -> None:
    _, queue, key = azure
    create(queue, key, "approval", "leaves")
    http("POST", f"/tenants/{TENANT}/instances/leaves/triggers", key=key, body={"topic": "approve"})
    queue.deliver_all()
    assert of_type(events(key, "leaves"), "TimerCancelled")
    late = pump(queue, lambda: [e for e in events(key, "leaves") if e["triggerId"] == "leaves:1:escalate:1"],
                what="the late firing")
    assert [e["type"] for e in late] == ["TriggerIgnored"]
    assert http("GET", f"/tenants/{TENANT}/instances/leaves", key=key).json()["state"] == "approved"


def test_a_timer_beyond_the_queue_limit_waits_in_the_timers_container_until_the_timer_function_brings_it(
        azure: tuple[AzureEnv, HostQueue, str]) -> None:
    _, queue, key = azure
    create(queue, key, "long", "far")
    host = function_app().waymark.get()
    (indexed,) = host.timer_index.due(TENANT, until="9999")
    assert indexed.key == "far:1:expire:1"
    assert queue.depth() == 0  # not on the queue: it could not hold it that long

    bring = functions()["bring_timers_forward"].get_user_function()
    from azure.functions.timer import TimerRequest

    def brought() -> bool:
        bring(TimerRequest(past_due=False))
        return not host.timer_index.due(TENANT, until="9999")

    wait_until(brought, timeout=20, what="the timer function to move the timer onto the queue")
    moved_at = time.time()
    assert moved_at >= parse_time(indexed.due_at).timestamp() - LIMIT  # not before it was due within the limit
    (fired,) = pump(queue, lambda: of_type(events(key, "far"), "TimerFired"), what="the long timer")
    assert fired["at"] >= fired["data"]["dueAt"] == indexed.due_at
    assert http("GET", f"/tenants/{TENANT}/instances/far", key=key).json()["status"] == "Complete"


def test_a_repeating_timer_on_azure_fires_n_times_then_stops(azure: tuple[AzureEnv, HostQueue, str]) -> None:
    _, queue, key = azure
    create(queue, key, "reminder", "rep")
    pump(queue, lambda: len(of_type(events(key, "rep"), "TimerFired")) >= 3, timeout=30, what="three reminders")
    http("POST", f"/tenants/{TENANT}/instances/rep/triggers", key=key, body={"topic": "done"})
    pump(queue, lambda: http("GET", f"/tenants/{TENANT}/instances/rep", key=key).json()["status"] == "Complete",
         what="the instance to finish")
    fired = of_type(events(key, "rep"), "TimerFired")
    last = len(fired) + 1  # scheduled before the instance left: it comes, and is only recorded
    pump(queue, lambda: [e for e in events(key, "rep") if e["triggerId"] == f"rep:1:remind:{last}"],
         what="the last firing to be recorded as stale")
    assert [e["data"]["n"] for e in of_type(events(key, "rep"), "TimerFired")] == list(range(1, len(fired) + 1))
    assert all(e["at"] >= e["data"]["dueAt"] for e in fired)


def test_scheduled_triggers_on_azure_fire_after_their_time_and_a_cancelled_one_never_applies(
        azure: tuple[AzureEnv, HostQueue, str]) -> None:
    _, queue, key = azure
    create(queue, key, "long", "sched")
    for trigger_id, delay in (("soon", "PT1S"), ("cancel-me", "PT1S"), ("beyond-limit", "PT3S")):
        sent = http("POST", f"/tenants/{TENANT}/instances/sched/triggers", key=key,
                    body={"id": trigger_id, "topic": "expire", "delay": delay})
        assert sent.status == 202, sent.body
    listed = http("GET", f"/tenants/{TENANT}/instances/sched/scheduled?kind=trigger", key=key).json()["items"]
    assert {item["timerId"] for item in listed} == {"soon", "cancel-me", "beyond-limit"}
    assert http("DELETE", f"/tenants/{TENANT}/instances/sched/scheduled/cancel-me", key=key).status == 204
    assert http("DELETE", f"/tenants/{TENANT}/instances/sched/scheduled/nope", key=key).status == 404
    applied = pump(queue, lambda: [e for e in events(key, "sched") if e["triggerId"] == "soon"
                                   and e["type"] == "TransitionApplied"], what="the scheduled trigger")
    (fired,) = [e for e in events(key, "sched") if e["type"] == "TimerFired" and e["data"]["timerId"] == "soon"]
    assert fired["at"] >= fired["data"]["dueAt"] and applied[0]["at"] >= fired["data"]["dueAt"]
    ignored = pump(queue, lambda: [e for e in events(key, "sched") if e["triggerId"] == "cancel-me"],
                   what="the cancelled trigger's firing")
    assert [e["type"] for e in ignored] == ["TriggerIgnored"]


def test_a_scheduled_broadcast_beyond_the_limit_goes_through_the_index(azure: tuple[AzureEnv, HostQueue, str]) -> None:
    _, queue, key = azure
    create(queue, key, "approval", "listener", "team:a")
    sent = http("POST", f"/tenants/{TENANT}/triggers", key=key,
                body={"id": "broadcast-later", "topic": "approve", "subjects": ["team:a"], "delay": "PT3S"})
    assert sent.status == 202, sent.body
    host = function_app().waymark.get()
    assert [t.key for t in host.timer_index.due(TENANT, until="9999")] == ["broadcast-later"]
    bring = functions()["bring_timers_forward"].get_user_function()
    from azure.functions.timer import TimerRequest

    def brought() -> bool:
        bring(TimerRequest(past_due=False))
        return not host.timer_index.due(TENANT, until="9999")

    wait_until(brought, timeout=20, what="the broadcast to be brought forward")
    applied = pump(queue, lambda: [e for e in events(key, "listener") if e["triggerId"] == "broadcast-later"],
                   what="the scheduled broadcast")
    assert applied[0]["type"] == "TransitionApplied" and applied[0]["at"] >= sent.json()["notBefore"]


def test_fifty_timers_pending_across_a_restart_of_the_app_fire_once_each(
        azure: tuple[AzureEnv, HostQueue, str], app_host: Any) -> None:
    env, queue, key = azure
    count = 50
    for n in range(count):
        accepted = http("POST", f"/tenants/{TENANT}/instances", key=key, body={"workflowId": "approval",
                                                                               "id": f"f-{n}"})
        assert accepted.status == 202, accepted.body
    creations = env.host_queue(visibility_timeout=1)  # the creations only: a firing seen meanwhile is left alone
    created = 0
    while created < count:
        for raw in creations.receive():
            if json.loads(host_message(raw).get_body())["kind"] == "create":
                created += creations.deliver(raw)
    due = max(parse_time(timer["dueAt"]) for n in range(count)
              for timer in http("GET", f"/tenants/{TENANT}/instances/f-{n}", key=key).json()["timers"])
    function_app().waymark.close()  # the app goes away with fifty timers pending …
    while time.time() <= due.timestamp():  # … and stays away until they are all due
        time.sleep(0.1)
    app_host()  # a new process of the app

    def fired() -> list[list[dict[str, Any]]]:
        return [of_type(events(key, f"f-{n}"), "TimerFired") for n in range(count)]

    pump(queue, lambda: all(fired()), timeout=60, what="every timer after the restart")
    queue.deliver_all()
    per_instance = fired()
    assert all(len(each) == 1 for each in per_instance), "each fired exactly once"
    assert all(each[0]["at"] >= each[0]["data"]["dueAt"] for each in per_instance)
