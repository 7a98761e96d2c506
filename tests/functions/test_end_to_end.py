"""function_app.py end to end with real `azure.functions` objects, Azurite and cosmosdb-server: onboarding, a
workflow, a webhook subscription and the tenant's Event Grid topic over the HTTP function; commands into Azurite;
the queue function invoked with what Azurite returned; commits in Cosmos; CloudEvents at both receivers; the
expense claim walked to `paid`; the timer function's sweep."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from engine.domain import Status
from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, GRID_KEY, GRID_KEY_SETTING, AzureEnv
from tests.functions.harness import HostQueue, function_app, host_message, http, run_queue_function, run_timer_function
from tests.webhook_receiver import Receiver

TENANT = "acme"
CLAIM = "claim-42"


def _process_one(queue: HostQueue) -> dict[str, Any]:
    """The one command the API just queued: received from Azurite, run through the queue function, completed."""
    [raw] = queue.receive()
    message = host_message(raw)
    body = json.loads(message.get_body())
    assert message.dequeue_count == 1 and message.pop_receipt
    run_queue_function(message)
    queue.client.delete_message(raw.id, raw.pop_receipt)  # the host completes a message whose function returned
    return body


def _grid_events(grid: Receiver) -> list[dict[str, Any]]:
    events = []
    for request in grid.requests("/api/events"):
        assert request.headers["aeg-sas-key"] == GRID_KEY
        assert request.headers["content-type"].startswith("application/cloudevents-batch+json")
        events.extend(json.loads(request.body))
    return events


def test_a_claim_goes_through_the_functions_to_paid(make_env: Callable[[str], AzureEnv], app_host: Any,
                                                    cosmos_account: CosmosAccount, hooks: Receiver, grid: Receiver,
                                                    expense_claim: dict[str, Any],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(cosmos_account.server.endpoint)
    app_host()

    # Onboarding over the HTTP function, with the tenant's Event Grid topic in its configuration.
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT, "config": {
        "eventGrid": {"endpoint": grid.url("/api/events"), "keyEnv": GRID_KEY_SETTING}}})
    assert created.status == 201, created.body
    key = created.json()["key"]
    assert http("PUT", f"/tenants/{TENANT}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    subscribed = http("PUT", f"/tenants/{TENANT}/subscriptions/claims", key=key,
                      body={"endpoint": hooks.url("/hook"), "secret": "webhook-secret-0123456789"})
    assert subscribed.status in (200, 201), subscribed.body
    assert subscribed.json()["status"] == "active"  # the receiver consented to the handshake
    assert [r.headers["webhook-request-origin"] for r in hooks.requests("/hook", method="OPTIONS")] == ["waymark"]

    queue = env.host_queue()
    accepted = http("POST", f"/tenants/{TENANT}/instances", key=key,
                    body={"workflowId": "expense-claim", "id": CLAIM, "context": {"claimant": "J George"}})
    assert accepted.status == 202 and accepted.headers["location"] == f"/tenants/{TENANT}/instances/{CLAIM}"
    with caplog.at_level(logging.INFO, logger="waymark"):
        create = _process_one(queue)
    assert create["kind"] == "create" and create["instanceId"] == CLAIM
    # The processing lines carry the message, the tenant, the instance, the trigger and the sequence.
    [applied] = [r for r in caplog.records if r.name == "waymark.processor" and r.getMessage().startswith("created")]
    assert (applied.tenant, applied.instanceId, applied.sequence) == (TENANT, CLAIM, 1)  # type: ignore[attr-defined]
    assert applied.messageId and applied.dequeueCount == 1  # type: ignore[attr-defined]

    steps = [("update", {"amount": 12.5}), ("submit", {}), ("approve", {"approver": "K Boss"}),
             ("pay", {"paidAt": "2025-01-02"})]
    for topic, content in steps:
        sent = http("POST", f"/tenants/{TENANT}/instances/{CLAIM}/triggers", key=key,
                    body={"id": f"{CLAIM}-{topic}", "topic": topic, "content": content})
        assert sent.status == 202, sent.body
        assert _process_one(queue)["trigger"]["id"] == f"{CLAIM}-{topic}"
    assert queue.depth() == 0

    # The commits are in cosmosdb-server, read with a store of their own.
    store = env.event_store()
    events = store.read(TENANT, CLAIM)
    assert [(e.sequence, str(e.type), e.trigger_id) for e in events] == [
        (1, "Created", create["triggerId"]),
        (2, "TransitionApplied", f"{CLAIM}-update"), (3, "TransitionApplied", f"{CLAIM}-submit"),
        (4, "TransitionApplied", f"{CLAIM}-approve"), (5, "TransitionApplied", f"{CLAIM}-pay"),
        (6, "Completed", f"{CLAIM}-pay")]
    instance = store.load(TENANT, CLAIM)
    assert (instance.state, instance.status, instance.context["amount"]) == ("paid", Status.COMPLETE, 12.5)
    assert store.undispatched(TENANT) == []  # every commit was delivered and marked
    got = http("GET", f"/tenants/{TENANT}/instances/{CLAIM}", key=key).json()
    assert (got["state"], got["status"], got["version"]) == ("paid", "Complete", 6)

    # Every event reached the webhook (CloudEvents parsed by the receiver) and the Event Grid topic (with its key).
    expected = {f"{CLAIM}:{n}" for n in range(1, 7)}
    assert hooks.ids("/hook") == expected
    assert {e["id"] for e in _grid_events(grid)} == expected
    completed = next(e for e in hooks.events("/hook") if e.get_id() == f"{CLAIM}:6")
    assert completed.get_type() == "io.waymark.workflow.instance.completed"
    assert completed.get_extension("tenantid") == TENANT and completed.get_data()["newState"] == "paid"

    # The timer: a commit left undispatched (as if the process died between publishing and marking) is published
    # again by the sweep, and marked.
    host = function_app().waymark.get()
    container = host.cosmos.get_database_client(f"{env.tenant_prefix}{TENANT}").get_container_client("events")
    [doc] = list(container.query_items("SELECT * FROM c WHERE c.kind = 'commit' AND c.firstSequence = 2",
                                       enable_cross_partition_query=True))
    container.patch_item(doc["id"], doc["instanceId"], [{"op": "set", "path": "/dispatched", "value": False},
                                                        {"op": "set", "path": "/indexed", "value": False}])
    # ... and not in the tenant's outbox document either (engine/stores/cosmos/outbox.py), where marks are kept.
    others = [c["position"] for c in container.query_items("SELECT c.position FROM c WHERE c.kind = 'commit'",
                                                           enable_cross_partition_query=True)
              if c["position"] != doc["position"]]
    container.upsert_item({"id": "~feed:outbox", "instanceId": "~feed", "kind": "outbox", "triggerKey": "~outbox",
                           "through": 0, "marks": {"others": others}})
    assert [c.last_sequence for c in store.undispatched(TENANT)] == [2]
    with caplog.at_level(logging.INFO, logger="waymark"):
        run_timer_function()
    assert store.undispatched(TENANT) == []
    assert [e.get_id() for e in hooks.events("/hook")].count(f"{CLAIM}:2") == 2  # at least once: again
    assert [e["id"] for e in _grid_events(grid)].count(f"{CLAIM}:2") == 2
    [swept] = [r for r in caplog.records if r.getMessage().startswith("outbox sweep")]
    assert "1 commit(s) republished" in swept.getMessage() and "1 commit(s) indexed" in swept.getMessage()
    assert swept.function == "sweep_outbox"  # type: ignore[attr-defined]


class StaticToken:
    """A `TokenCredential` standing in for the managed identity (cosmosdb-server accepts any token)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **options: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("token-of-the-app-identity", int(time.time()) + 3600)


def test_identity_based_settings_reach_cosmos_with_the_credential(
        make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount,
        expense_claim: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(cosmos_account.server.endpoint)
    monkeypatch.delenv("WAYMARK_COSMOS_KEY")  # identity-based, as main.bicep deploys
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c1d0")
    credential = StaticToken()
    app_host(credential=credential)

    # A tenant recorded as infra/tenant.bicep outputs it: its topic is published to with the app's identity.
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT, "config": {
        "eventGridTopicEndpoint": "https://acme-topic.westeurope-1.eventgrid.azure.net/api/events"}})
    assert created.status == 201, created.body
    key = created.json()["key"]
    assert http("PUT", f"/tenants/{TENANT}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    [topic] = http("GET", f"/tenants/{TENANT}/subscriptions", key=key).json()["items"]
    assert (topic["kind"], topic["endpoint"], topic["hasSecret"]) == (
        "eventgrid", "https://acme-topic.westeurope-1.eventgrid.azure.net/api/events", False)

    assert http("POST", f"/tenants/{TENANT}/instances", key=key, body={
        "workflowId": "expense-claim", "id": CLAIM, "context": {"claimant": "J George"}}).status == 202
    assert env.host_queue().deliver_all() == 1
    assert env.event_store().load(TENANT, CLAIM).version == 1
    host_name = cosmos_account.server.endpoint.split("//")[1].split(":")[0]
    assert (f"https://{host_name}/.default",) in credential.scopes  # Cosmos DB: a token, no key
    # The commit was published to the topic with the same identity (the topic's host does not resolve here: the
    # delivery fails after the token was asked for, and the sweeper would retry it).
    assert ("https://eventgrid.azure.net/.default",) in credential.scopes
