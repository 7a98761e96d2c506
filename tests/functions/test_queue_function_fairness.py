"""The queue function is fair between tenants (real `azure.functions` objects, Azurite, cosmosdb-server, a real
webhook receiver): an invocation waits for the deliveries of its own commits only, never for another tenant's
tarpit; a tenant at its limit of commands at once has the next one sent back (a copy, delayed) instead of taking
another invocation."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.harness import HostQueue, function_app, host_message, http, run_queue_function
from tests.webhook_receiver import Receiver, wait_until

SLOW, FAST = "slowco", "fastco"


def _onboard(tenant: str, expense_claim: dict[str, Any]) -> str:
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": tenant})
    assert created.status == 201, created.body
    key: str = created.json()["key"]
    assert http("PUT", f"/tenants/{tenant}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    return key


def _queue_create(tenant: str, key: str, instance_id: str) -> None:
    accepted = http("POST", f"/tenants/{tenant}/instances", key=key,
                    body={"workflowId": "expense-claim", "id": instance_id, "context": {"claimant": "K"}})
    assert accepted.status == 202, accepted.body


def _invoke_in_thread(queue: HostQueue, tenant: str) -> threading.Thread:
    """Receive the tenant's one queued command and run the queue function on it in a thread of its own, as the host
    runs invocations concurrently; the message is completed when the function returns."""
    [raw] = [m for m in queue.receive() if json.loads(host_message(m).get_body())["tenant"] == tenant]

    def invoke() -> None:
        run_queue_function(host_message(raw))
        queue.client.delete_message(raw.id, raw.pop_receipt)

    thread = threading.Thread(target=invoke, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def two_tenants(make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount,
                hooks: Receiver, expense_claim: dict[str, Any],
                monkeypatch: pytest.MonkeyPatch) -> tuple[AzureEnv, str, str]:
    env = make_env(cosmos_account.server.endpoint)
    monkeypatch.setenv("WAYMARK_TENANT_CONCURRENCY", "1")
    monkeypatch.setenv("WAYMARK_DELIVERY_WAIT_SECONDS", "60")
    app_host()
    slow_key, fast_key = _onboard(SLOW, expense_claim), _onboard(FAST, expense_claim)
    for tenant, key, path in ((SLOW, slow_key, "/tarpit"), (FAST, fast_key, "/fast")):
        subscribed = http("PUT", f"/tenants/{tenant}/subscriptions/hook", key=key, body={"endpoint": hooks.url(path)})
        assert subscribed.json()["status"] == "active", subscribed.body
    return env, slow_key, fast_key


def test_an_invocation_waits_for_its_own_deliveries_only(two_tenants: tuple[AzureEnv, str, str],
                                                         hooks: Receiver) -> None:
    env, slow_key, fast_key = two_tenants
    hold = hooks.path("/tarpit").hold = threading.Event()
    queue = env.host_queue()
    try:
        _queue_create(SLOW, slow_key, "s1")
        slow = _invoke_in_thread(queue, SLOW)
        wait_until(lambda: hooks.path("/tarpit").held == 1, what="the slow tenant's delivery to be held")
        _queue_create(FAST, fast_key, "f1")
        fast = _invoke_in_thread(queue, FAST)
        # The fast tenant's invocation returns once its own event is delivered, while the other's is still held
        # (before, every invocation waited for all deliveries in flight: up to 20 s behind the tarpit).
        wait_until(lambda: not fast.is_alive(), timeout=15, what="the fast tenant's invocation to return")
        assert hooks.ids("/fast") == {"f1:1"} and hooks.path("/tarpit").held == 1
        assert slow.is_alive()  # it waits for its own delivery, as before
    finally:
        hold.set()
    slow.join(30)
    assert not slow.is_alive() and hooks.ids("/tarpit") == {"s1:1"}


def test_a_tenant_at_its_limit_has_its_next_command_sent_back(two_tenants: tuple[AzureEnv, str, str],
                                                              hooks: Receiver) -> None:
    env, slow_key, fast_key = two_tenants
    hold = hooks.path("/tarpit").hold = threading.Event()
    queue = env.host_queue(visibility_timeout=60)
    host = function_app().waymark.get()
    try:
        _queue_create(SLOW, slow_key, "s1")
        slow = _invoke_in_thread(queue, SLOW)  # holds the tenant's one slot while it waits for its delivery
        wait_until(lambda: host.gate.busy(SLOW) == 1 and hooks.path("/tarpit").held == 1, what="the slot taken")
        _queue_create(SLOW, slow_key, "s2")
        [raw] = queue.receive()
        run_queue_function(host_message(raw))  # returns: the command was sent back, not processed
        queue.client.delete_message(raw.id, raw.pop_receipt)
        assert env.event_store().read(SLOW, "s2") == []  # not processed
        _queue_create(FAST, fast_key, "f1")
        fast = _invoke_in_thread(queue, FAST)  # another tenant is not held back
        wait_until(lambda: not fast.is_alive(), timeout=15, what="the other tenant's invocation")
        assert hooks.ids("/fast") == {"f1:1"}
    finally:
        hold.set()
    slow.join(30)
    # The copy of s2 comes back (visible after its delay) and is processed then; nothing was counted against it.
    copy = wait_until(lambda: queue.receive(), timeout=10, what="the copy of the command sent back")
    [raw] = copy
    assert json.loads(host_message(raw).get_body())["instanceId"] == "s2" and raw.dequeue_count == 1
    run_queue_function(host_message(raw))
    queue.client.delete_message(raw.id, raw.pop_receipt)
    assert [e.sequence for e in env.event_store().read(SLOW, "s2")] == [1]
