"""The outbox: undispatched until published, per-subscription tracking, the sweeper, the three sources of
subscriptions, and the SQLite stores."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.feed import (
    InvalidSubscription,
    RetryPolicy,
    SqliteSubscriptionStore,
    SubscriptionStatus,
    parse_static_subscriptions,
)
from engine.hosting.runtime import sqlite_engine
from tests.feed.conftest import fast_webhook
from tests.feed.helpers import FAULTY, TENANT, claim_lifecycle, create, trigger
from tests.webhook_receiver import Receiver, Reply, wait_until


def test_a_commit_stays_undispatched_until_it_is_published(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    hold = receiver.path("/hook").hold = threading.Event()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    commit = create(rig.engine, "c1")
    assert not commit.dispatched
    assert rig.undispatched() == [1]  # the receiver holds the request: not published yet
    hold.set()
    rig.drain()
    assert rig.undispatched() == []
    assert rig.engine.events.read_feed(TENANT)[0].dispatched


def test_a_commit_without_subscribers_is_dispatched(make_rig: Any) -> None:
    rig = make_rig()
    claim_lifecycle(rig.engine, "c1")
    rig.drain()
    assert rig.undispatched() == []


def test_the_sweeper_republishes_after_the_grace_period(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=fast_webhook(retry=RetryPolicy(attempts=1)), grace_seconds=30.0, pause_after=100)
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(500))
    create(rig.engine, "c1")
    rig.drain()
    assert rig.undispatched() == [1]
    now = datetime.now(UTC)
    rig.feed.sweeper.now = lambda: now
    assert rig.feed.sweeper.sweep_once(wait=5).republished == 0  # within the grace period: the live path's
    rig.feed.sweeper.now = lambda: now + timedelta(seconds=31)
    report = rig.feed.sweeper.sweep_once(wait=5)
    assert (report.republished, report.unfinished) == (1, 0)
    assert rig.undispatched() == []
    assert receiver.ids("/hook") == {"c1:1"}


def test_a_retry_skips_the_subscriptions_already_served(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=fast_webhook(retry=RetryPolicy(attempts=1)))
    rig.feed.subscribe(TENANT, "good", endpoint=receiver.url("/good"))
    rig.feed.subscribe(TENANT, "flaky", endpoint=receiver.url("/flaky"))
    receiver.script("/flaky", Reply(503))
    create(rig.engine, "c1")
    rig.drain()
    assert rig.undispatched() == [1]
    store = rig.feed.catalog.store
    assert store.deliveries(TENANT, 1) == {"good"}
    rig.feed.sweeper.sweep_once(wait=5)
    assert rig.undispatched() == []
    assert len(receiver.requests("/good")) == 1  # not sent again
    assert receiver.ids("/flaky") == {"c1:1"}
    assert store.deliveries(TENANT, 1) == set()  # forgotten once dispatched


def test_the_sweeper_thread_finishes_what_failed(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=fast_webhook(retry=RetryPolicy(attempts=1)))
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(500), Reply(500))
    create(rig.engine, "c1")
    rig.feed.start(sweep_interval=0.02)
    wait_until(lambda: rig.undispatched() == [], what="the sweeper to deliver")
    assert receiver.ids("/hook") == {"c1:1"}


def test_a_full_lane_leaves_commits_to_the_sweeper(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(lane_concurrency=1)
    rig.feed.dispatcher.lanes.limit = 1
    hold = receiver.path("/hook").hold = threading.Event()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    create(rig.engine, "c1")
    lanes = rig.feed.dispatcher.lanes

    def c1_in_flight() -> bool:  # taken out of the lane, held by the receiver
        return lanes.busy(TENANT) == 1 and lanes.queued((TENANT, "hook")) == 0

    wait_until(c1_in_flight, what="c1 in flight")
    create(rig.engine, "c2")  # waits in the lane
    create(rig.engine, "c3")  # the lane is full: left undispatched
    wait_until(lambda: rig.feed.dispatcher._inflight.keys() == {(TENANT, 1), (TENANT, 2)}, what="c3 released")
    hold.set()
    rig.drain()
    assert rig.undispatched() == [3]
    rig.feed.sweeper.sweep_once(wait=5)
    assert rig.undispatched() == []
    assert receiver.ids("/hook") == {"c1:1", "c2:1", "c3:1"}


def test_pause_by_hand_then_resume(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    assert rig.feed.pause(TENANT, "hook").status is SubscriptionStatus.PAUSED
    claim_lifecycle(rig.engine, "c1")
    rig.drain()
    assert receiver.requests("/hook") == [] and rig.undispatched() == []
    assert rig.feed.subscription(TENANT, "hook").backlog_from == 1
    rig.feed.resume(TENANT, "hook")
    rig.drain()
    assert len(receiver.ids("/hook")) == 8
    assert rig.feed.subscription(TENANT, "hook").backlog_from is None


def test_deleted_subscriptions_get_nothing(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    rig.feed.unsubscribe(TENANT, "hook")
    create(rig.engine, "c1")
    rig.drain()
    assert receiver.requests("/hook") == [] and rig.undispatched() == []


def test_a_definitions_event_subscriptions(receiver: Receiver, make_rig: Any, expense_claim: dict[str, Any]) -> None:
    rig = make_rig()
    document = copy.deepcopy(expense_claim)
    document["eventSubscriptions"] = [{"endpoint": receiver.url("/claims"), "secret": "definition-secret-123"},
                                      {"endpoint": receiver.url("/refuses")}]
    receiver.path("/refuses").consent = False
    rig.engine.catalog.put(TENANT, document)
    rig.engine.catalog.put(TENANT, FAULTY)
    create(rig.engine, "c1")
    create(rig.engine, "f1", "faulty", note="x")
    trigger(rig.engine, "c1", "update", "u1", amount=3)
    rig.drain()
    assert receiver.ids("/claims") == {"c1:1", "c1:2"}  # only its workflow's events
    assert len(receiver.requests("/claims", method="OPTIONS")) == 1  # the handshake, on first use
    assert receiver.requests("/refuses") == []
    assert len(receiver.requests("/refuses", method="OPTIONS")) == 1  # not retried on every commit
    listed = {s.name: s for s in rig.feed.subscriptions(TENANT)}
    [claims] = [s for s in listed.values() if s.endpoint.endswith("/claims")]
    [refuses] = [s for s in listed.values() if s.endpoint.endswith("/refuses")]
    assert claims.source == "definition" and claims.status is SubscriptionStatus.ACTIVE
    assert claims.workflow_id == "expense-claim" and claims.name.startswith("definition:expense-claim:")
    assert refuses.status is SubscriptionStatus.PENDING
    with pytest.raises(InvalidSubscription):
        rig.feed.unsubscribe(TENANT, claims.name)
    assert rig.undispatched() == []


def test_static_subscriptions(receiver: Receiver, make_rig: Any) -> None:
    static = parse_static_subscriptions(f'[{{"name": "audit", "endpoint": "{receiver.url("/audit")}", '
                                        f'"tenants": ["{TENANT}"], "mode": "binary"}}, '
                                        f'{{"name": "other", "endpoint": "{receiver.url("/other")}", '
                                        '"tenants": ["someone-else"]}]')
    rig = make_rig(static=static)
    create(rig.engine, "c1")
    rig.drain()
    assert receiver.ids("/audit") == {"c1:1"}
    assert receiver.requests("/audit")[0].headers["ce-id"] == "c1:1"
    assert receiver.requests("/other") == []
    assert [s.name for s in rig.feed.subscriptions(TENANT)] == ["static:audit"]
    with pytest.raises(InvalidSubscription) as problems:
        parse_static_subscriptions('[{"name": "x"}, {"name": "y", "endpoint": "http://e/", "types": ["nope"]}, 3]')
    assert len(problems.value.problems) == 3


def test_on_sqlite_with_state_that_survives_a_restart(receiver: Receiver, make_rig: Any, tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    rig = make_rig(engine=engine, subscriptions=SqliteSubscriptionStore(tmp_path),
                   webhook=fast_webhook(retry=RetryPolicy(attempts=1)), pause_after=1, lane_concurrency=1)
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"), secret="sqlite-secret-0123",
                       types=["io.waymark.workflow.instance.created"])
    rig.feed.subscribe(TENANT, "flaky", endpoint=receiver.url("/flaky"))
    receiver.script("/flaky", Reply(500))
    for n in range(3):
        claim_lifecycle(rig.engine, f"c{n}")
    rig.drain()
    assert receiver.ids("/hook") == {"c0:1", "c1:1", "c2:1"}
    assert rig.undispatched() == []
    rig.feed.close()

    reopened = SqliteSubscriptionStore(tmp_path)
    try:
        hook, flaky = reopened.get(TENANT, "hook"), reopened.get(TENANT, "flaky")
        assert hook is not None and hook.secret == "sqlite-secret-0123"
        assert hook.types == frozenset({"io.waymark.workflow.instance.created"})
        assert flaky is not None and flaky.status is SubscriptionStatus.PAUSED and flaky.backlog_from == 1
        assert (tmp_path / "feed" / f"{TENANT}.db").exists()
        assert reopened.list("another") == []  # tenants are siloed in their own files
    finally:
        reopened.close()
