"""Fair delivery: a failed delivery waits for its retry without holding back the commits behind it (webhooks and
Event Grid); a tenant's slow subscribers hold at most its own share of the delivery threads; one subscriber at most
`lane_concurrency` requests at once. Against the real receiver on loopback."""

from __future__ import annotations

import json
import threading
from typing import Any

from engine.feed import RetryPolicy
from engine.feed.lanes import Lanes
from engine.hosting.runtime import memory_engine
from engine.service.commands import CreateInstance
from tests.feed.conftest import fast_webhook
from tests.feed.helpers import TENANT, create
from tests.webhook_receiver import Receiver, Reply, wait_until

OTHER = "globex"
SLOW_RETRY = RetryPolicy(attempts=3, base_delay=0.4, max_delay=0.4)


def test_a_failed_delivery_does_not_hold_back_the_commits_behind_it(receiver: Receiver, make_rig: Any) -> None:
    # one request at a time, so the order of arrival shows who waited for whom
    rig = make_rig(webhook=fast_webhook(retry=SLOW_RETRY), lane_concurrency=1)
    delays: list[float] = []
    rig.feed.dispatcher.on_retry = delays.append
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(500))  # c1's first attempt
    for n in range(1, 6):
        create(rig.engine, f"c{n}")
    rig.drain()
    arrived = [event.get_id() for event in receiver.events("/hook")]
    assert arrived == ["c2:1", "c3:1", "c4:1", "c5:1", "c1:1"]  # c1's retry came after the others
    assert len(delays) == 1 and 0.2 <= delays[0] <= 0.4
    assert rig.undispatched() == []
    assert rig.feed.subscription(TENANT, "hook").consecutive_failures == 0


def test_event_grid_keeps_delivering_fresh_commits_while_an_old_one_waits(receiver: Receiver,
                                                                          make_rig: Any) -> None:
    config = {"eventGrid": {"endpoint": receiver.url("/api/events"), "key": "topic-access-key-0123456789"}}
    rig = make_rig(webhook=fast_webhook(retry=SLOW_RETRY), tenant_config=lambda tenant: config, lane_concurrency=1)
    receiver.script("/api/events", Reply(503))
    for n in range(1, 5):
        create(rig.engine, f"c{n}")
    rig.drain(timeout=20)
    requests = receiver.requests("/api/events")
    ids = [json.loads(request.body)[0]["id"] for request in requests]
    assert len(requests) == 5  # the SDK does not retry by itself: one request per attempt
    assert ids[0] == "c1:1" and ids[1:] == ["c2:1", "c3:1", "c4:1", "c1:1"]
    assert rig.undispatched() == []


def test_a_tenants_slow_subscribers_hold_only_its_own_share(receiver: Receiver, make_rig: Any,
                                                             expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(OTHER, expense_claim)
    rig = make_rig(engine=engine, tenant_concurrency=3, lane_concurrency=2,
                   tenants=lambda: [TENANT, OTHER])
    hold = threading.Event()
    for name in ("tarpit-1", "tarpit-2"):
        receiver.path(f"/{name}").hold = hold
        rig.feed.subscribe(TENANT, name, endpoint=receiver.url(f"/{name}"))
    rig.feed.subscribe(OTHER, "hook", endpoint=receiver.url("/other"))
    try:
        for n in range(10):
            create(rig.engine, f"c{n}")  # 20 deliveries to the two tarpits
        wait_until(lambda: rig.feed.dispatcher.lanes.busy(TENANT) == 3, what="the tenant's three threads busy")
        for n in range(20):
            engine.processor.create(CreateInstance(OTHER, f"o{n}", "expense-claim", f"create-o{n}",
                                                   context={"claimant": "K"}))
        wait_until(lambda: len(receiver.ids("/other")) == 20, what="the other tenant's events")
        held = receiver.path("/tarpit-1").held + receiver.path("/tarpit-2").held
        assert held == 3 and rig.feed.dispatcher.lanes.busy(TENANT) == 3
        assert max(receiver.path(p).most_held for p in ("/tarpit-1", "/tarpit-2")) <= 2  # per subscription
    finally:
        hold.set()
    rig.drain(timeout=20)
    assert len(receiver.ids("/tarpit-1")) == len(receiver.ids("/tarpit-2")) == 10


def test_lanes_run_one_task_at_a_time_for_a_struggling_subscriber() -> None:
    lanes = Lanes(threads=4, per_tenant=4, per_lane=4, struggle_after=2)
    key = (TENANT, "hook")
    try:
        lanes.attempted(key, False)
        assert not lanes.struggling(key)
        lanes.attempted(key, False)
        assert lanes.struggling(key)
        running, most = [0], [0]
        lock = threading.Lock()
        done = threading.Semaphore(0)

        def task() -> None:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            threading.Event().wait(0.02)
            with lock:
                running[0] -= 1
            done.release()

        for _ in range(6):
            assert lanes.push(key, task)
        for _ in range(6):
            assert done.acquire(timeout=5)
        assert most[0] == 1
        lanes.attempted(key, True)
        assert not lanes.struggling(key)
    finally:
        lanes.close()


def test_a_full_lane_refuses_and_closed_lanes_refuse() -> None:
    lanes = Lanes(threads=1, per_tenant=1, per_lane=1, limit=2)
    key = (TENANT, "hook")
    gate = threading.Event()
    try:
        assert lanes.push(key, gate.wait)  # running
        wait_until(lambda: lanes.queued(key) == 0, what="the first task to start")
        assert lanes.push(key, lambda: None)
        assert lanes.later(60.0, key, lambda: None)  # a scheduled retry counts against the limit
        assert not lanes.push(key, lambda: None)
    finally:
        gate.set()
        lanes.close()
    assert not lanes.push(key, lambda: None) and not lanes.later(0.0, key, lambda: None)
