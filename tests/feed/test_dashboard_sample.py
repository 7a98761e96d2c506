"""The dashboard sample subscriber: correct counts whatever the order and however many copies arrive."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx

from engine.feed import CloudEventMapper
from engine.hosting.runtime import memory_engine
from engine.service.engine import Engine
from samples.dashboard.app import create_dashboard
from samples.dashboard.counts import ClaimCounts
from tests.feed.conftest import serve
from tests.feed.helpers import FAULTY, TENANT, create, trigger
from tests.webhook_receiver import Receiver, wait_until

SECRET = "dashboard-secret-0123456789"


def _claims(engine: Engine, count: int) -> None:
    """Claims left in every state: draft, awaiting-approval, awaiting-payment, paid, abandoned."""
    engine.catalog.put(TENANT, FAULTY)
    create(engine, "not-a-claim", "faulty", note="x")  # another workflow: not counted
    for n in range(count):
        claim = f"claim-{n}"
        create(engine, claim)
        trigger(engine, claim, "update", f"{claim}-u1", amount=n + 1)
        trigger(engine, claim, "update", f"{claim}-u2", amount=n + 2)
        step = n % 5
        if step == 4:
            trigger(engine, claim, "abandon", f"{claim}-x")
            continue
        if step >= 1:
            trigger(engine, claim, "submit", f"{claim}-s")
        if step >= 2:
            trigger(engine, claim, "approve", f"{claim}-a", approver="K Boss")
        if step >= 3:
            trigger(engine, claim, "pay", f"{claim}-p", paidAt="today")
            trigger(engine, claim, "pay", f"{claim}-p-again", paidAt="today")  # rejected: still paid


def _truth(engine: Engine) -> dict[str, int]:
    page = engine.events.list_instances(TENANT, workflow_id="expense-claim", limit=1000)
    return dict(Counter(instance.state for instance in page.items))


def test_counts_are_right_under_shuffling_and_duplicates(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, expense_claim)
    _claims(engine, 25)
    commits = engine.events.read_feed(TENANT, limit=1000)
    events = [e for group in CloudEventMapper(engine.events).page(TENANT, commits) for e in group]
    truth = _truth(engine)
    assert set(truth) == {"draft", "awaiting-approval", "awaiting-payment", "paid", "abandoned"}

    for seed in range(20):
        rng = random.Random(seed)
        delivered = events + rng.sample(events, len(events) // 2) + rng.sample(events, len(events) // 3)
        rng.shuffle(delivered)
        counts = ClaimCounts()
        for event in delivered:
            counts.apply(event)
        assert counts.by_state() == truth, f"seed {seed}"
        assert counts.duplicates + counts.stale + counts.applied + counts.ignored == len(delivered)

    in_reverse = ClaimCounts()
    for event in reversed(events):
        in_reverse.apply(event)
    assert in_reverse.by_state() == truth
    assert in_reverse.applied == 25  # only the newest event of each claim counted


def test_the_dashboard_service_subscribed_to_a_live_feed(receiver: Receiver, make_rig: Any) -> None:
    dashboard = create_dashboard(secret=SECRET)
    with serve(dashboard) as url:
        rig = make_rig()
        subscription, _ = rig.feed.subscribe(TENANT, "dashboard", endpoint=f"{url}/events", secret=SECRET,
                                             mode="binary")
        assert subscription.status == "active"  # it consented to the handshake
        _claims(rig.engine, 10)
        rig.drain()
        truth = _truth(rig.engine)
        with httpx.Client(base_url=url) as http:
            snapshot = wait_until(lambda: (s := http.get("/counts").json())["byState"] == truth and s,
                                  what="the dashboard to count every claim")
            assert snapshot["claims"] == 10
            # the sweeper's redelivery (every commit again) changes nothing
            for commit in rig.engine.events.read_feed(TENANT, limit=1000):
                rig.feed.dispatcher.submit(TENANT, commit)
            rig.drain()
            again = http.get("/counts").json()
            assert again["byState"] == truth and again["received"]["duplicates"] > 0
            forged = http.post("/events", content=b"{}", headers={"X-Waymark-Signature": "sha256=00"})
            assert forged.status_code == 401
