"""Event Grid: the real `azure-eventgrid` client against a local receiver that checks what it sends."""

from __future__ import annotations

import json
from typing import Any

from cloudevents.core.formats.json import JSONFormat

from engine.feed import SubscriptionStatus
from tests.feed.helpers import TENANT, create, every_event_type
from tests.webhook_receiver import Receiver, Reply

KEY = "topic-access-key-0123456789"


def _grid(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {"eventGrid": {"endpoint": receiver.url("/api/events"), **extra}}


def test_commits_are_sent_as_cloudevent_batches_with_the_access_key(receiver: Receiver, make_rig: Any) -> None:
    config = _grid(receiver, key=KEY)
    rig = make_rig(tenant_config=lambda tenant: config if tenant == TENANT else {})
    every_event_type(rig.engine)
    rig.drain(timeout=20)

    requests = receiver.requests("/api/events")
    commits = rig.engine.events.read_feed(TENANT, limit=100)
    assert len(requests) == len(commits)  # one batch per commit
    received = []
    for request in requests:
        assert request.headers["aeg-sas-key"] == KEY
        assert request.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
        assert request.query.startswith("api-version=")
        items = json.loads(request.body)
        assert isinstance(items, list)
        received.extend(JSONFormat().read(None, json.dumps(item)) for item in items)
    expected = {f"{e.instance_id}:{e.sequence}" for c in commits for e in c.events}
    assert {e.get_id() for e in received} == expected
    sample = next(e for e in received if e.get_id() == "claim-1:2")
    assert sample.get_type() == "io.waymark.workflow.instance.transitioned"
    assert sample.get_source() == "/tenants/acme/workflows/expense-claim/instances/claim-1"
    assert sample.get_subject() == "claim-1"
    assert sample.get_extension("sequence") == 2 and sample.get_extension("tenantid") == TENANT
    assert sample.get_data()["newContext"] == {"claimant": "J George", "amount": 12.5}
    assert rig.undispatched() == []
    [grid] = rig.feed.subscriptions(TENANT)
    assert (grid.name, grid.kind, grid.source, grid.status) == ("eventgrid:topic", "eventgrid", "tenant",
                                                                SubscriptionStatus.ACTIVE)


def test_a_rejected_key_pauses_the_topic_until_resumed(receiver: Receiver, make_rig: Any,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setenv("WAYMARK_TEST_GRID_KEY", KEY)
    config = _grid(receiver, keyEnv="WAYMARK_TEST_GRID_KEY", types=["io.waymark.workflow.instance.created"])
    rig = make_rig(tenant_config=lambda tenant: config, pause_after=1, lane_concurrency=1)
    receiver.script("/api/events", Reply(401))
    create(rig.engine, "c1")
    create(rig.engine, "c2")
    rig.drain(timeout=20)
    paused = rig.feed.subscription(TENANT, "eventgrid:topic")
    assert paused.status is SubscriptionStatus.PAUSED and "401" in (paused.last_error or "")
    assert paused.backlog_from == 1
    assert rig.undispatched() == []
    rig.feed.resume(TENANT, "eventgrid:topic")
    rig.drain(timeout=20)
    ids = {json.loads(r.body)[0]["id"] for r in receiver.requests("/api/events")[1:]}
    assert ids == {"c1:1", "c2:1"}
    assert all(r.headers["aeg-sas-key"] == KEY for r in receiver.requests("/api/events"))
