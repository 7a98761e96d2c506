"""What the Azure host refuses up front and what it takes from its settings: a command too large for one Storage
queue message is a 413 problem (never a 500 after the API's own body limit let it through), and the static
subscriptions of WAYMARK_FEED_SUBSCRIPTIONS receive every tenant's events, as under `waymark serve`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.hosting.azure_settings import AzureSettingsError, load_azure_settings
from engine.queues.azure import MAX_BODY_BYTES
from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, AzureEnv
from tests.functions.harness import http
from tests.webhook_receiver import Receiver, wait_until

TENANT = "acme"


def _onboard(expense_claim: dict[str, Any]) -> str:
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT})
    assert created.status == 201, created.body
    key: str = created.json()["key"]
    assert http("PUT", f"/tenants/{TENANT}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    return key


def test_a_command_too_large_for_a_queue_message_is_a_413_problem(
        make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount,
        expense_claim: dict[str, Any]) -> None:
    env = make_env(cosmos_account.server.endpoint)
    app_host()
    key = _onboard(expense_claim)
    queue = env.host_queue()
    created = http("POST", f"/tenants/{TENANT}/instances", key=key,
                   body={"workflowId": "expense-claim", "id": "claim-1", "context": {"claimant": "Ann"}})
    assert created.status == 202
    assert queue.deliver_all() == 1

    big = {"note": "x" * (MAX_BODY_BYTES + 10)}  # under the API's 256 KiB limit, over one message's 47 KiB
    for path, body in [(f"/tenants/{TENANT}/instances/claim-1/triggers", {"topic": "update", "content": big}),
                       (f"/tenants/{TENANT}/triggers", {"topic": "update", "content": big, "subjects": ["s"]}),
                       (f"/tenants/{TENANT}/instances", {"workflowId": "expense-claim", "context": big})]:
        refused = http("POST", path, key=key, body=body)
        assert refused.status == 413, (path, refused.status, refused.body)
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "urn:waymark:problem:command-too-large"
        assert problem["limit"] == MAX_BODY_BYTES and problem["size"] > MAX_BODY_BYTES
        assert "smaller content" in problem["detail"]
    assert queue.depth() == 0  # nothing was queued

    fits = http("POST", f"/tenants/{TENANT}/instances/claim-1/triggers", key=key,
                body={"topic": "update", "content": {"note": "x" * (MAX_BODY_BYTES - 1000)}})
    assert fits.status == 202


def test_static_subscriptions_of_the_settings_receive_the_events(
        make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount, hooks: Receiver,
        expense_claim: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(cosmos_account.server.endpoint)
    monkeypatch.setenv("WAYMARK_FEED_SUBSCRIPTIONS",
                       f'[{{"name": "audit", "endpoint": "{hooks.url("/audit")}", "tenants": ["{TENANT}"]}}, '
                       f'{{"name": "elsewhere", "endpoint": "{hooks.url("/other")}", "tenants": ["other"]}}]')
    app_host()
    key = _onboard(expense_claim)
    assert http("POST", f"/tenants/{TENANT}/instances", key=key, body={
        "workflowId": "expense-claim", "id": "claim-7", "context": {"claimant": "Ann"}}).status == 202
    assert env.host_queue().deliver_all() == 1
    wait_until(lambda: hooks.ids("/audit") == {"claim-7:1"}, what="the static subscription's delivery")
    assert hooks.ids("/other") == set()
    listed = {s["name"]: s for s in http("GET", f"/tenants/{TENANT}/subscriptions", key=key).json()["items"]}
    assert listed["static:audit"]["source"] == "static"


def test_invalid_static_subscriptions_are_a_settings_problem(make_env: Callable[[str], AzureEnv],
                                                             cosmos_account: CosmosAccount) -> None:
    env = make_env(cosmos_account.server.endpoint)
    for value, why in [("not json", "WAYMARK_FEED_SUBSCRIPTIONS is invalid"),
                       ('[{"name": "a"}]', "endpoint must be an absolute http(s) URL")]:
        with pytest.raises(AzureSettingsError) as refused:
            load_azure_settings({**env.values, "WAYMARK_FEED_SUBSCRIPTIONS": value})
        assert why in str(refused.value)
