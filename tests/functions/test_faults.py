"""Engine faults under the queue function: Cosmos DB goes away while commands arrive, and commands that can never
succeed.

- **An outage is held, not shed.** Cosmos (cosmosdb-server) stops while 200 triggers arrive; the host keeps
  invoking the queue function; each failing command is held — a copy re-sent with a visibility delay and its attempt
  count, the original completed — so its dequeue count never grows: nothing reaches `{queue}-poison` and nothing is
  parked, however long the outage (time compressed by the hold settings: delays of 1 to 2 s instead of minutes, so
  each command is held more times than host.json's maxDequeueCount of 5 in a 25 s outage). The tenant's circuit
  breaker opens (the log says so, and `/readyz`), holds the tenant's commands without calling Cosmos, probes, and
  closes once Cosmos is back; then every trigger is applied, exactly once.
- **What fails on every delivery is parked** on its last delivery with the error — not poisoned — and replayed
  from there once it can succeed.

The outage is a cosmosdb-server whose listener is stopped and started with its data kept (tests/functions/
cosmos_outage.py): cosmosdb-server keeps nothing across a process restart. The host's side of the queue is
tests/functions/harness.py's (receive, invoke, complete on return, leave on raise).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as HostQueueMessage
from azure.storage.queue import QueueClient

from engine.domain import Trigger
from engine.hosting.azure import MAX_DEQUEUE_COUNT
from engine.queues.azure import AzureStorageCommandQueue
from engine.service.commands import SendTrigger, to_message
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.cosmos_outage import PausableCosmosServer
from tests.functions.harness import HostQueue, host_message, http, run_queue_function, run_timer_function
from tests.webhook_receiver import wait_until

TENANT = "acme"
INSTANCES = 20
TRIGGERS_EACH = 10


@pytest.fixture
def server() -> Iterator[PausableCosmosServer]:
    made = PausableCosmosServer()
    yield made
    made.close()


def _onboard(expense_claim: dict[str, Any]) -> str:
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT})
    assert created.status == 201, created.body
    key: str = created.json()["key"]
    assert http("PUT", f"/tenants/{TENANT}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    return key


def _create(key: str, claim: str) -> None:
    sent = http("POST", f"/tenants/{TENANT}/instances", key=key, body={
        "workflowId": "expense-claim", "id": claim, "triggerId": f"{claim}-create", "context": {"claimant": "Ann"}})
    assert sent.status == 202, sent.body


class Host:
    """The Functions host's queue loop in a thread: receive (visibility 10 s, host.json's), invoke, complete when
    the function returns, leave the message when it raises. Records every delivery it made."""

    def __init__(self, queue: HostQueue) -> None:
        self.queue = queue
        self.deliveries: list[tuple[str, int, dict[str, Any]]] = []  # (message id, dequeue count, body)
        self.raised = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Host:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def trigger_ids(self) -> list[str]:
        return [body["trigger"]["id"] for _, _, body in list(self.deliveries) if body.get("kind") == "trigger"]

    def deliveries_of(self, trigger_id: str) -> int:
        return self.trigger_ids().count(trigger_id)

    def _run(self) -> None:
        while not self.stop.is_set():
            batch = self.queue.receive(max_messages=16)
            if not batch:
                time.sleep(0.05)
            for raw in batch:
                self.deliveries.append((str(raw.id), raw.dequeue_count or 0,
                                        json.loads(host_message(raw).get_body())))
                if not self.queue.deliver(raw):
                    self.raised += 1


def test_cosmos_stopped_while_200_triggers_arrive_nothing_is_poisoned_and_each_applies_once(
        server: PausableCosmosServer, make_env: Callable[[str], AzureEnv], app_host: Any,
        expense_claim: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(server.endpoint)
    for name, value in {"WAYMARK_HOLD_BASE_DELAY_SECONDS": "1", "WAYMARK_HOLD_MAX_DELAY_SECONDS": "2",
                        "WAYMARK_BREAKER_THRESHOLD": "3", "WAYMARK_BREAKER_COOLDOWN_SECONDS": "1"}.items():
        monkeypatch.setenv(name, value)
    app_host()
    key = _onboard(expense_claim)
    claims = [f"claim-{n:02d}" for n in range(INSTANCES)]
    for claim in claims:
        _create(key, claim)
    host_queue = env.host_queue(visibility_timeout=10)
    assert host_queue.deliver_all() == INSTANCES
    # The triggers arrive on the queue as the API puts them there (with the registry in the same Cosmos account
    # the API itself answers 503 during the outage, and its clients retry).
    commands = AzureStorageCommandQueue.from_connection_string(env.azurite.connection_string, env.queue_name)
    sent = [(claim, f"{claim}-t{n}") for n in range(TRIGGERS_EACH) for claim in claims]

    with caplog.at_level(logging.INFO, logger="waymark"), Host(host_queue) as host:
        server.stop()
        outage_started = time.monotonic()
        for index, (claim, trigger_id) in enumerate(sent):  # 200 triggers over the first ~10 s of the outage
            commands.send(to_message(SendTrigger(TENANT, claim, Trigger("update", trigger_id, {"amount": index}))))
            time.sleep(0.05)
        ready = http("GET", "/readyz", key=ADMIN_KEY)  # the registry is in the stopped account too: 503
        assert ready.status == 503
        assert ready.json()["checks"]["breakers"]["open"][TENANT]["store"] == "cosmos"
        # Cosmos stays away until every trigger has been delivered more often than maxDequeueCount allows: under
        # the host's own retries each would be in the poison queue by now.
        wait_until(lambda: min(host.deliveries_of(trigger_id) for _, trigger_id in sent) > MAX_DEQUEUE_COUNT,
                   timeout=300, what="every trigger delivered more than maxDequeueCount times")
        outage = time.monotonic() - outage_started
        server.start()
        store = env.event_store()
        wait_until(lambda: sum(len(store.read(TENANT, claim)) - 1 for claim in claims) == len(sent), timeout=120,
                   what="every trigger applied once Cosmos is back")
        wait_until(lambda: host_queue.depth() == 0, timeout=60, what="the queue drained")

    # None was poisoned, none parked; no message was ever delivered twice (held copies are new messages).
    poison = QueueClient.from_connection_string(env.azurite.connection_string, f"{env.queue_name}-poison")
    assert int(poison.get_queue_properties().approximate_message_count or 0) == 0
    poison.close()
    assert http("GET", f"/tenants/{TENANT}/parked", key=key).json()["items"] == []
    assert {count for _, count, _ in host.deliveries} == {1}
    assert all(host.deliveries_of(trigger_id) > MAX_DEQUEUE_COUNT for _, trigger_id in sent)
    print(f"outage of {outage:.0f} s; deliveries per trigger: {sorted(Counter(host.trigger_ids()).values())[::20]}")
    # Each trigger applied exactly once, to its instance.
    for claim in claims:
        assert sorted(e.trigger_id for e in store.read(TENANT, claim)[1:]) == sorted(
            trigger_id for c, trigger_id in sent if c == claim)
    lines = [r.getMessage() for r in caplog.records if r.name == "waymark.holding"]
    assert any(line.startswith("circuit breaker open for tenant 'acme'") for line in lines)
    assert any(line.startswith("circuit breaker closed for tenant 'acme'") for line in lines)
    assert host.raised == 0
    commands.close()


def test_a_command_failing_on_every_delivery_is_parked_on_the_last_and_replayed_from_there(
        make_env: Callable[[str], AzureEnv], app_host: Any, expense_claim: dict[str, Any],
        cosmos_account: Any, caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(cosmos_account.server.endpoint)
    app_host()
    key = _onboard(expense_claim)
    # A trigger for an instance that does not exist (yet): retried on each delivery, as its creation may be late.
    commands = AzureStorageCommandQueue.from_connection_string(env.azurite.connection_string, env.queue_name,
                                                               max_dequeue_count=MAX_DEQUEUE_COUNT)
    commands.send(to_message(SendTrigger(TENANT, "late", Trigger("update", "late-update", {"amount": 3}))))
    attempts = 0
    with caplog.at_level(logging.INFO, logger="waymark"):
        while batch := commands.receive(max_messages=1, visibility_timeout=30):
            [message] = batch
            attempts += 1
            delivered = HostQueueMessage(id=message.id, body=json.dumps(message.body).encode(),
                                         dequeue_count=message.dequeue_count, pop_receipt=message.receipt)
            try:
                run_queue_function(delivered)
            except Exception:
                commands.release(message)  # the host: visible again (here at once)
            else:
                commands.complete(message)  # the host completes a message whose function returned
    assert attempts == MAX_DEQUEUE_COUNT
    assert commands.poisoned() == [] and commands.depth() == 0
    [parked] = http("GET", f"/tenants/{TENANT}/parked", key=key).json()["items"]
    assert (parked["reason"], parked["deliveryCount"], parked["errorType"]) == ("failed", 5, "InstanceNotFound")
    assert parked["triggerId"] == "late-update" and parked["body"]["trigger"]["content"] == {"amount": 3}

    # The instance is created; the parked trigger is replayed and applies.
    _create(key, "late")
    assert env.host_queue().deliver_all() == 1
    replayed = http("POST", f"/tenants/{TENANT}/parked/{parked['id']}/requeue", key=key)
    assert replayed.status == 200, replayed.body
    assert replayed.json()["outcome"] == "applied"
    assert [e.trigger_id for e in env.event_store().read(TENANT, "late")] == ["late-create", "late-update"]
    assert http("GET", f"/tenants/{TENANT}/parked", key=key).json()["items"] == []
    commands.close()


def test_the_timer_moves_what_the_host_poisoned_for_a_tenant_into_its_parked_store(
        make_env: Callable[[str], AzureEnv], app_host: Any, expense_claim: dict[str, Any],
        cosmos_account: Any) -> None:
    env = make_env(cosmos_account.server.endpoint)
    app_host()
    key = _onboard(expense_claim)
    # In the poison queue (as the Functions host leaves a message it gave up on): one of the tenant's, one naming no
    # tenant (it stays there, for the admin).
    poison = QueueClient.from_connection_string(env.azurite.connection_string, f"{env.queue_name}-poison")
    ours = to_message(SendTrigger(TENANT, "claim-x", Trigger("update", "x-1", {"amount": 1})))
    for body in (ours, {"kind": "trigger", "trigger": {"id": "orphan", "topic": "t"}}):
        poison.send_message(base64.b64encode(json.dumps(body).encode()).decode())
    run_timer_function()
    [parked] = http("GET", f"/tenants/{TENANT}/parked", key=key).json()["items"]
    assert (parked["reason"], parked["triggerId"], parked["body"]) == ("poisoned", "x-1", ours)
    assert "poison queue" in parked["detail"]
    left = list(poison.peek_messages(max_messages=32))
    assert len(left) == 1 and b"orphan" in base64.b64decode(str(left[0].content))
    poison.close()
