"""Detect, diagnose and recover faulted instances over real HTTP, with the change feed watching."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.domain import Trigger
from engine.service.commands import SendTrigger, to_message
from tests.integration.conftest import RunningServer, serve_api
from tests.webhook_receiver import Receiver, wait_until

PAYMENTS = {
    "id": "payments",
    "initialState": "due",
    "states": {
        "due": {"transitions": [
            {"id": "split", "trigger": "split", "target": "due",
             "actions": [{"type": "set-context", "values": {"share": "context.total / trigger.content.parts"}}]},
            {"id": "pay", "trigger": "pay", "target": "paid"},
        ]},
        "paid": {},
    },
}
FAULTED = "io.waymark.workflow.instance.faulted"
RECOVERED = "io.waymark.workflow.instance.recovered"
TERMINATED = "io.waymark.workflow.instance.terminated"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def ops(api_server: RunningServer, receiver: Receiver) -> Iterator[tuple[str, httpx.Client]]:
    tenant = f"ops-{uuid.uuid4().hex[:8]}"
    key = api_server.onboard(tenant, samples=False)
    with api_server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/payments", json=PAYMENTS).status_code == 201
        response = http.put(f"/tenants/{tenant}/subscriptions/operator", json={
            "endpoint": receiver.url("/operator"), "types": [FAULTED, RECOVERED, TERMINATED]})
        assert response.status_code in (200, 201), response.text
        yield tenant, http


def faulted_instance(tenant: str, http: httpx.Client) -> str:
    instance_id = f"pay-{uuid.uuid4().hex[:8]}"
    response = http.post(f"/tenants/{tenant}/instances", json={"workflowId": "payments", "id": instance_id,
                                                                "context": {"total": 100}},
                         headers={"Prefer": "wait=10"})
    assert response.status_code == 201, response.text
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/triggers",
                         json={"id": f"split-{instance_id}", "topic": "split", "content": {"parts": 0}},
                         headers={"Prefer": "wait=10"})
    assert response.status_code == 200 and response.json()["outcome"] == "faulted", response.text
    return instance_id


def event_types(receiver: Receiver, instance_id: str) -> list[str]:
    return [e.get_type() for e in receiver.events("/operator") if e.get_subject() == instance_id]


def test_a_fault_is_published_at_once_and_listed_with_its_details(ops: tuple[str, httpx.Client],
                                                                  receiver: Receiver) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    wait_until(lambda: FAULTED in event_types(receiver, instance_id), what="the faulted CloudEvent")
    event = next(e for e in receiver.events("/operator") if e.get_subject() == instance_id)
    data: Any = event.get_data()
    assert data["fault"]["errorType"] == "DivisionByZero"
    listed = http.get(f"/tenants/{tenant}/instances", params={"status": "faulted"}).json()["items"]
    mine = next(item for item in listed if item["id"] == instance_id)
    assert mine["fault"]["where"] == "$.states.due.transitions[0].actions[0].values.share"
    assert mine["fault"]["errorType"] == "DivisionByZero" and mine["fault"]["at"]


def test_reset_with_a_context_patch_recovers_and_is_published(ops: tuple[str, httpx.Client],
                                                              receiver: Receiver) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover", json={
        "mode": "reset", "reason": "parts were missing", "by": "jo@ops", "context": {"parts": 4}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["outcome"] == "recovered"
    assert body["instance"]["status"] == "Waiting" and body["instance"]["fault"] is None
    assert body["instance"]["context"] == {"total": 100, "parts": 4}
    history = http.get(f"/tenants/{tenant}/instances/{instance_id}/events").json()["items"]
    recovered = history[-1]
    assert recovered["type"] == "Recovered"
    assert recovered["data"]["by"].startswith("jo@ops (tenant ") and recovered["data"]["reason"] == "parts were missing"
    wait_until(lambda: RECOVERED in event_types(receiver, instance_id), what="the recovered CloudEvent")


def test_retry_re_runs_the_faulting_trigger(ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover",
                         json={"mode": "retry", "reason": "try once more", "id": f"retry-{instance_id}"})
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "faulted"  # same trigger, same definition: it faults again
    again = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover",
                      json={"mode": "retry", "reason": "try once more", "id": f"retry-{instance_id}"})
    assert again.json()["duplicate"] is True  # the same operation id applies once
    types = [e["type"] for e in http.get(f"/tenants/{tenant}/instances/{instance_id}/events").json()["items"]]
    assert types == ["Created", "Faulted", "Recovered", "Faulted"]


def test_reset_to_an_earlier_event(ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover",
                         json={"mode": "reset", "toSequence": 1, "reason": "back to creation"})
    assert response.status_code == 200, response.text
    assert response.json()["instance"]["state"] == "due"
    assert response.json()["instance"]["context"] == {"total": 100}


@pytest.mark.parametrize(("body", "status", "slug"), [
    ({"mode": "retry", "reason": "x", "state": "due"}, 422, "invalid-request"),
    ({"mode": "reset", "reason": "x", "state": "nowhere"}, 422, "invalid-command"),
    ({"mode": "reset", "reason": "x", "toSequence": 999}, 422, "invalid-command"),
    ({"mode": "reset"}, 422, "invalid-request"),
    ({"mode": "rewind", "reason": "x"}, 422, "invalid-request"),
])
def test_bad_recoveries_are_problems(ops: tuple[str, httpx.Client], body: dict[str, Any], status: int,
                                     slug: str) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith(slug) and response.json()["detail"]


def test_recovering_a_healthy_instance_is_refused_unless_forced(ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    instance_id = f"ok-{uuid.uuid4().hex[:8]}"
    http.post(f"/tenants/{tenant}/instances", json={"workflowId": "payments", "id": instance_id,
                                                     "context": {"total": 1}}, headers={"Prefer": "wait=10"})
    refused = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover", json={"mode": "retry", "reason": "x"})
    assert refused.status_code == 409 and "not Faulted" in refused.json()["detail"]
    forced = http.post(f"/tenants/{tenant}/instances/{instance_id}/recover",
                       json={"mode": "retry", "reason": "x", "force": True})
    assert forced.status_code == 200


def test_terminate_then_triggers_are_rejected(ops: tuple[str, httpx.Client], receiver: Receiver) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    response = http.post(f"/tenants/{tenant}/instances/{instance_id}/terminate", json={"reason": "written off"})
    assert response.status_code == 200 and response.json()["instance"]["status"] == "Terminated"
    late = http.post(f"/tenants/{tenant}/instances/{instance_id}/triggers", json={"topic": "pay"},
                     headers={"Prefer": "wait=10"})
    assert late.json()["outcome"] == "rejected"
    again = http.post(f"/tenants/{tenant}/instances/{instance_id}/terminate", json={"reason": "twice"})
    assert again.status_code == 409
    wait_until(lambda: TERMINATED in event_types(receiver, instance_id), what="the terminated CloudEvent")


def test_bulk_recover_with_dry_run_then_for_real(ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    faulted = {faulted_instance(tenant, http) for _ in range(3)}
    dry = http.post(f"/tenants/{tenant}/recoveries", json={
        "mode": "reset", "reason": "bulk", "context": {"parts": 1},
        "filter": {"status": "Faulted", "workflowId": "payments", "errorType": "DivisionByZero"},
        "dryRun": True, "limit": 1000}).json()
    assert faulted <= set(dry["matched"]) and dry["results"] == []
    still = http.get(f"/tenants/{tenant}/instances", params={"status": "Faulted", "limit": 1000}).json()["items"]
    assert faulted <= {item["id"] for item in still}, "a dry run changes nothing"
    done = http.post(f"/tenants/{tenant}/recoveries", json={
        "mode": "reset", "reason": "bulk", "context": {"parts": 1}, "filter": {"errorType": "DivisionByZero"},
        "limit": 1000}).json()
    assert faulted <= {r["instanceId"] for r in done["results"] if r["outcome"] == "recovered"}
    left = http.get(f"/tenants/{tenant}/instances", params={"status": "Faulted", "limit": 1000}).json()["items"]
    assert not faulted & {item["id"] for item in left}


def test_bulk_terminate(ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    targets = {faulted_instance(tenant, http) for _ in range(2)}
    done = http.post(f"/tenants/{tenant}/terminations", json={"reason": "clean up", "limit": 1000}).json()
    assert targets <= {r["instanceId"] for r in done["results"] if r["outcome"] == "terminated"}


def test_another_tenant_cannot_recover(api_server: RunningServer, ops: tuple[str, httpx.Client]) -> None:
    tenant, http = ops
    instance_id = faulted_instance(tenant, http)
    other = api_server.onboard(f"other-{uuid.uuid4().hex[:6]}", samples=False)
    with api_server.client(other) as intruder:
        response = intruder.post(f"/tenants/{tenant}/instances/{instance_id}/recover",
                                 json={"mode": "retry", "reason": "x"})
        assert response.status_code == 403


def test_poisoned_commands_are_listed_requeued_and_discarded(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0) as server:
        key = server.onboard("poison", samples=False)
        queue = server.engine.queue
        for n in range(2):
            queue.send(to_message(SendTrigger("poison", f"ghost-{n}", Trigger("go", f"t-{n}"))))
        for _ in range(server.service.settings.max_dequeue_count + 1):  # the queue poisons them
            for message in queue.receive(max_messages=10, visibility_timeout=30):
                queue.release(message)
        with server.client(key) as http:
            items = http.get("/tenants/poison/commands/poison").json()["items"]
            assert sorted(item["instanceId"] for item in items) == ["ghost-0", "ghost-1"]
            first, second = items
            assert http.post(f"/tenants/poison/commands/poison/{first['id']}/requeue").status_code == 202
            assert http.delete(f"/tenants/poison/commands/poison/{second['id']}").status_code == 204
            assert http.get("/tenants/poison/commands/poison").json()["items"] == []
            missing = http.post("/tenants/poison/commands/poison/nope/requeue")
            assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem")
        [requeued] = queue.receive(max_messages=10, visibility_timeout=30)
        assert requeued.body["trigger"]["id"] == first["body"]["trigger"]["id"], "the trigger id is kept"
