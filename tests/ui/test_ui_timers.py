"""The dashboard shows time and change: an instance's pending timers ("escalate in 2 d 4 h"), timer and migration
events on its timeline, and on the overview how many instances could move to a newer version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from engine.ui.times import until
from tests.ui.helpers import Tenant

TIMED = {
    "id": "escalation", "initialState": "awaiting",
    "states": {"awaiting": {"timeouts": [{"id": "escalate", "after": "P2DT4H", "trigger": {"topic": "escalate"}}],
                            "transitions": [{"id": "escalate", "trigger": "escalate", "target": "escalated"}]},
               "escalated": {"transitions": [{"id": "close", "trigger": "close", "target": "closed"}]},
               "closed": {}},
}


def test_how_long_until_a_timer_is_due_reads_at_a_glance() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert until("2026-01-03T04:00:00.000000Z", now) == "in 2 d 4 h"
    assert until("2026-01-01T00:05:30.000000Z", now) == "in 5 min 30 s"
    assert until("2026-01-01T00:00:12.000000Z", now) == "in 12 s"
    assert until("2026-01-01T00:00:00.000000Z", now) == "in 0 s"
    assert until("2025-12-31T23:59:57.000000Z", now) == "overdue by 3 s"
    assert until(now + timedelta(days=3, minutes=1), now) == "in 3 d 1 min"
    assert until("not a time", now) == "not a time"


def test_the_instance_page_shows_its_timers_and_their_events(session: httpx.Client, tenant: Tenant) -> None:
    assert tenant.api.put(f"/tenants/{tenant.id}/workflows/escalation", json=TIMED).status_code in (200, 201)
    instance_id = tenant.waiting("escalation", {}, prefix="esc")
    scheduled = tenant.api.post(f"/tenants/{tenant.id}/instances/{instance_id}/triggers",
                                json={"id": "close-later", "topic": "close", "delay": "PT5H"})
    assert scheduled.status_code == 202
    html = session.get(f"/ui/instances/{instance_id}").text
    assert 'id="timers"' in html
    assert '<strong class="mono">escalate</strong> in 2 d 3 h' in html  # 2 d 4 h less the seconds since
    assert "scheduled trigger <code>close-later</code>" in html
    assert "Scheduled timer escalate" in html and "Scheduled scheduled trigger close-later" in html


def test_the_overview_says_how_many_instances_could_move_to_a_new_version(session: httpx.Client,
                                                                          tenant: Tenant) -> None:
    workflow = f"versions-{uuid.uuid4().hex[:6]}"
    v1 = {"id": workflow, "initialState": "a", "states": {"a": {"transitions": [{"id": "go", "trigger": "go",
                                                                                   "target": "b"}]}, "b": {}}}
    assert tenant.api.put(f"/tenants/{tenant.id}/workflows/{workflow}", json=v1).status_code in (200, 201)
    for _ in range(3):
        tenant.waiting(workflow, {}, prefix="v")
    assert tenant.api.put(f"/tenants/{tenant.id}/workflows/{workflow}",
                          json={**v1, "displayName": "v2"}).status_code == 200
    html = session.get("/ui/").text
    assert 'id="new-versions"' in html
    assert "3 instances</a> of v2 on v1 could move to v2" in html  # named by its latest version's displayName
    assert f"waymark instances migrate-all {workflow} --from-version 1 --to-version 2" in html
