"""The tenant's Event Grid topic refuses for a while (as while the app's role assignment propagates): the feed pauses
it, resumes it by itself with a growing pause, and once the topic takes events again every event is delivered —
nothing was dropped while it was paused. The operator sees each pause and resume: the log's signals
(`io.waymark.feed.paused` / `io.waymark.feed.resumed`), the subscription's state and `GET /readyz`.

The Functions host's timer is played by calling the timer function (the sweeper) in a loop; the topic is the
Event Grid-shaped receiver the real `EventGridPublisherClient` posts to.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, GRID_KEY_SETTING, AzureEnv
from tests.functions.harness import http, run_timer_function
from tests.webhook_receiver import Receiver, Reply

TENANT = "acme"
REFUSALS = 14  # the topic answers 403 to this many batches before it accepts


def test_a_refusing_event_grid_topic_is_paused_resumes_by_itself_and_gets_every_event(
        make_env: Callable[[str], AzureEnv], app_host: Any, cosmos_account: CosmosAccount, grid: Receiver,
        expense_claim: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    env = make_env(cosmos_account.server.endpoint)
    monkeypatch.setenv("WAYMARK_FEED_RESUME_AFTER_SECONDS", "1")
    monkeypatch.setenv("WAYMARK_FEED_RESUME_MAX_SECONDS", "2")
    app_host()
    created = http("POST", "/tenants", key=ADMIN_KEY, body={"id": TENANT, "config": {
        "eventGrid": {"endpoint": grid.url("/api/events"), "keyEnv": GRID_KEY_SETTING}}})
    key = created.json()["key"]
    assert http("PUT", f"/tenants/{TENANT}/workflows/expense-claim", key=key, body=expense_claim).status in (200, 201)
    grid.script("/api/events", *[Reply(403) for _ in range(REFUSALS)])

    queue = env.host_queue()
    with caplog.at_level(logging.INFO, logger="waymark"):
        for n in range(6):
            assert http("POST", f"/tenants/{TENANT}/instances", key=key, body={
                "workflowId": "expense-claim", "id": f"claim-{n}", "context": {"claimant": "Ann"}}).status == 202
            assert queue.deliver_all() == 1
            for topic, content in (("update", {"amount": n + 1}), ("submit", {})):
                assert http("POST", f"/tenants/{TENANT}/instances/claim-{n}/triggers", key=key,
                            body={"topic": topic, "content": content}).status == 202
                assert queue.deliver_all() == 1
        topic = _topic(key)
        assert topic["status"] == "paused" and topic["resumeAt"] and topic["pauses"] == 1
        assert "403" in topic["lastError"]
        ready = http("GET", "/readyz", key=ADMIN_KEY).json()
        assert ready["checks"]["feed"]["paused"][TENANT][0]["name"] == "eventgrid:topic"

        expected = {f"claim-{n}:{s}" for n in range(6) for s in (1, 2, 3)}
        deadline = time.monotonic() + 120
        while _delivered(grid) != expected:
            assert time.monotonic() < deadline, f"still missing {sorted(expected - _delivered(grid))[:5]}"
            run_timer_function()  # the sweeper: resumes what is due, delivers the backlog
            time.sleep(0.3)

    signals = [(getattr(r, "signal", ""), r.getMessage()) for r in caplog.records if getattr(r, "signal", None)]
    kinds = [kind for kind, _ in signals]
    assert kinds.count("io.waymark.feed.paused") >= 2, kinds  # it kept refusing after the first resume
    assert "io.waymark.feed.resumed" in kinds
    assert any("resumed by itself" in text for _, text in signals)
    topic = _topic(key)
    assert (topic["status"], topic["pauses"], topic["backlogFrom"]) == ("active", 0, None)
    assert http("GET", "/readyz", key=ADMIN_KEY).json()["checks"]["feed"]["paused"] == {}
    assert sum(1 for r in grid.requests("/api/events") if r.status == 403) == REFUSALS  # each refused batch was
    # sent again later (every event was delivered), not dropped
    assert env.event_store().undispatched(TENANT) == []


def _topic(key: str) -> dict[str, Any]:
    listed = http("GET", f"/tenants/{TENANT}/subscriptions", key=key).json()["items"]
    [topic] = [s for s in listed if s["name"] == "eventgrid:topic"]
    return topic


def _delivered(grid: Receiver) -> set[str]:
    """Ids of the events the topic took (the batches it answered 2xx)."""
    ids: set[str] = set()
    for request in grid.requests("/api/events"):
        if request.status < 300:
            ids.update(item["id"] for item in json.loads(request.body))
    return ids
