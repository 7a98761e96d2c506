"""Engine faults under the queue function: Cosmos DB goes away while commands are processed.

- The queue function raises, so the message is not completed: Azurite hands it out again after its visibility
  timeout with a higher dequeue count; once the server is back the commands are processed, every instance reaches
  the state its triggers lead to, and no trigger is lost or applied twice.
- A message delivered `maxDequeueCount` times (host.json: 5) without success goes to `{queue}-poison`. In Azure the
  Functions host moves it there itself; here the queue is driven through `AzureStorageCommandQueue`'s receive and
  release, whose receive moves a message past `max_dequeue_count` to the same poison queue — the host's own
  poison handling is not what runs. From there an operator requeues it, and it applies once the store is back.

The outage is a cosmosdb-server whose listener is stopped and started with its data kept (tests/functions/
cosmos_outage.py): cosmosdb-server keeps nothing across a process restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.functions.queue import QueueMessage as HostQueueMessage

from engine.azure_host import MAX_DEQUEUE_COUNT
from engine.domain import StoreUnavailable
from engine.queues.azure import AzureStorageCommandQueue
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.cosmos_outage import PausableCosmosServer
from tests.functions.harness import HostQueue, http, run_queue_function

TENANT = "acme"


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


def _update(key: str, claim: str, amount: float) -> None:
    sent = http("POST", f"/tenants/{TENANT}/instances/{claim}/triggers", key=key,
                body={"id": f"{claim}-update", "topic": "update", "content": {"amount": amount}})
    assert sent.status == 202, sent.body


def _receive(queue: HostQueue, count: int, timeout: float = 15.0) -> list[Any]:
    """The next `count` messages Azurite hands out (waiting for hidden ones to come back)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages came back"
        got += queue.receive(max_messages=count - len(got))
        time.sleep(0.1)
    return got


def test_an_outage_keeps_the_commands_queued_until_cosmos_is_back(
        server: PausableCosmosServer, make_env: Callable[[str], AzureEnv], app_host: Any,
        expense_claim: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(server.endpoint)
    app_host()
    key = _onboard(expense_claim)
    queue = env.host_queue(visibility_timeout=2)  # how long a failed message stays hidden
    for claim in ("claim-a", "claim-b"):
        _create(key, claim)
    assert queue.deliver_all() == 2
    # Accepted while the store is up: two triggers on two instances, and a third instance's creation.
    _update(key, "claim-a", 5)
    _update(key, "claim-b", 7)
    _create(key, "claim-c")

    server.stop()
    with caplog.at_level(logging.INFO, logger="waymark"):
        first = _receive(queue, 3)
        assert [queue.deliver(raw) for raw in first] == [False, False, False]  # raised: not completed
    assert all(isinstance(failure, StoreUnavailable) for failure in queue.failures)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "waymark.azure"]
    assert len(failed) == 3
    assert {(r.tenant, r.dequeueCount) for r in failed} == {(TENANT, 1)}  # type: ignore[attr-defined]
    assert {r.messageId for r in failed} == {str(raw.id) for raw in first}  # type: ignore[attr-defined]
    assert all("StoreUnavailable" in r.getMessage() and "delivered again" in r.getMessage() for r in failed)

    # After the visibility timeout Azurite shows each again, delivered once more.
    second = _receive(queue, 3)
    assert {str(raw.id) for raw in second} == {str(raw.id) for raw in first}
    assert {raw.dequeue_count for raw in second} == {2}
    assert [queue.deliver(raw) for raw in second] == [False, False, False]

    server.start()
    queue.visibility_timeout = 30  # from now on each is completed well within its timeout
    third = _receive(queue, 3)
    assert {raw.dequeue_count for raw in third} == {3}
    assert [queue.deliver(raw) for raw in third] == [True, True, True]
    assert queue.receive() == [] and queue.depth() == 0

    store = env.event_store()
    for claim, amount in (("claim-a", 5), ("claim-b", 7)):
        instance = store.load(TENANT, claim)
        assert (instance.state, instance.version, instance.context["amount"]) == ("draft", 2, amount)
        assert [e.trigger_id for e in store.read(TENANT, claim)] == [f"{claim}-create", f"{claim}-update"]
    assert [e.trigger_id for e in store.read(TENANT, "claim-c")] == ["claim-c-create"]
    assert store.undispatched(TENANT) == []


def test_a_command_past_max_dequeue_count_reaches_the_poison_queue(
        server: PausableCosmosServer, make_env: Callable[[str], AzureEnv], app_host: Any,
        expense_claim: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(server.endpoint)
    app_host()
    key = _onboard(expense_claim)
    _create(key, "claim-p")
    assert env.host_queue().deliver_all() == 1
    _update(key, "claim-p", 9)

    server.stop()
    commands = AzureStorageCommandQueue.from_connection_string(env.azurite.connection_string, env.queue_name,
                                                               max_dequeue_count=MAX_DEQUEUE_COUNT)
    attempts = 0
    with caplog.at_level(logging.INFO, logger="waymark"):
        while batch := commands.receive(max_messages=1, visibility_timeout=30):
            [message] = batch
            attempts += 1
            assert message.dequeue_count == attempts
            delivered = HostQueueMessage(id=message.id, body=json.dumps(message.body).encode(),
                                         dequeue_count=message.dequeue_count, pop_receipt=message.receipt)
            with pytest.raises(StoreUnavailable):
                run_queue_function(delivered)
            commands.release(message)  # visible again at once (the host waits host.json's visibilityTimeout)
    assert attempts == MAX_DEQUEUE_COUNT == 5
    last = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "waymark.azure"][-1]
    assert "last delivery: the host moves it to the poison queue" in last
    [poisoned] = commands.poisoned()
    assert poisoned.body["trigger"]["id"] == "claim-p-update" and poisoned.dequeue_count == MAX_DEQUEUE_COUNT
    assert commands.depth() == 0

    # Nothing was lost: requeued once the store is back, the trigger applies (once).
    server.start()
    commands.requeue_poisoned(poisoned.id)
    assert commands.poisoned() == []
    assert env.host_queue().deliver_all() == 1
    store = env.event_store()
    assert [e.trigger_id for e in store.read(TENANT, "claim-p")] == ["claim-p-create", "claim-p-update"]
    assert store.load(TENANT, "claim-p").context["amount"] == 9
    commands.close()
