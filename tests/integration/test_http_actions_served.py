"""`waymark serve` wires the httpx port: an `http` action reaches a real service on loopback."""

from __future__ import annotations

import uuid

from tests.integration.conftest import RunningServer
from tests.webhook_receiver import Receiver, Reply


def test_an_http_action_calls_out_from_a_served_engine(api_server: RunningServer) -> None:
    receiver = Receiver()
    try:
        receiver.script("/pay", Reply(204))
        tenant = f"http-{uuid.uuid4().hex[:6]}"
        key = api_server.onboard(tenant, samples=False)
        with api_server.client(key) as http:
            assert http.put(f"/tenants/{tenant}/workflows/pay", json={"id": "pay", "initialState": "due", "states": {
                "due": {"transitions": [{"id": "pay", "trigger": "pay", "target": "paid", "actions": [
                    {"type": "http", "url": receiver.url("/pay"), "body": "{'claim': instance.id}", "retries": 0}]}]},
                "paid": {}}}).status_code == 201
            http.post(f"/tenants/{tenant}/instances", json={"workflowId": "pay", "id": "p-1"},
                      headers={"Prefer": "wait=10"})
            result = http.post(f"/tenants/{tenant}/instances/p-1/triggers", json={"topic": "pay"},
                               headers={"Prefer": "wait=10"}).json()
        assert result["outcome"] == "applied", result
        [request] = receiver.requests("/pay")
        assert request.headers["idempotency-key"] == "p-1:2:$.states.due.transitions[0].actions[0]"
        assert request.body == b'{"claim":"p-1"}'
    finally:
        receiver.close()
