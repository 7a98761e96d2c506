"""A subscription paused by failures resumes by itself, later each time; one paused by hand waits; what either is
owed is delivered once resumed, and each pause and resume is signalled."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from engine.feed import SubscriptionStatus
from engine.feed.pausing import ResumePolicy
from tests.feed.helpers import TENANT, create
from tests.webhook_receiver import Receiver, Reply, wait_until


def test_resume_delays_double_up_to_the_maximum() -> None:
    policy = ResumePolicy(after=60, maximum=3600)
    assert [policy.delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_a_failing_webhook_is_paused_resumed_by_the_sweeper_and_gets_its_backlog(
        receiver: Receiver, make_rig: Any, caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig(pause_after=2, lane_concurrency=1, resume_policy=ResumePolicy(after=0.3, maximum=0.6))
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", *[Reply(503) for _ in range(3 * 6)])  # each delivery is tried 3 times
    with caplog.at_level(logging.INFO, logger="waymark.feed"):
        for n in range(4):
            create(rig.engine, f"c{n}")
        rig.drain(timeout=20)
        paused = rig.feed.subscription(TENANT, "hook")
        assert paused.status is SubscriptionStatus.PAUSED and paused.pauses == 1 and paused.resume_at
        assert paused.backlog_from is not None and paused.paused_at  # (the first failed commit stays undispatched)
        assert rig.feed.attention(TENANT)[0]["resumeAt"] == paused.resume_at
        assert rig.feed.sweeper.sweep_once(wait=5).catch_ups == 0  # not due yet: still paused
        assert rig.feed.subscription(TENANT, "hook").status is SubscriptionStatus.PAUSED

        def delivered() -> bool:
            rig.feed.sweeper.sweep_once(wait=5)
            return receiver.ids("/hook") == {f"c{n}:1" for n in range(4)}

        wait_until(delivered, timeout=30, what="every event delivered after the automatic resumes")
    after = rig.feed.subscription(TENANT, "hook")
    assert (after.status, after.pauses, after.backlog_from, after.resume_at) == (SubscriptionStatus.ACTIVE, 0,
                                                                                 None, None)
    assert rig.feed.attention(TENANT) == []
    kinds = [getattr(r, "signal", None) for r in caplog.records if getattr(r, "signal", None)]
    assert kinds[0] == "io.waymark.feed.paused" and "io.waymark.feed.resumed" in kinds
    assert kinds.count("io.waymark.feed.paused") >= 2  # still failing after its first resume: paused again


def test_a_subscription_paused_by_hand_waits_for_resume(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(resume_policy=ResumePolicy(after=0.0, maximum=0.0))
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    paused = rig.feed.pause(TENANT, "hook")
    assert paused.status is SubscriptionStatus.PAUSED and paused.resume_at is None
    create(rig.engine, "c1")
    rig.drain()
    time.sleep(0.05)
    rig.feed.sweeper.sweep_once(wait=5)
    assert rig.feed.subscription(TENANT, "hook").status is SubscriptionStatus.PAUSED
    assert receiver.ids("/hook") == set()
    assert rig.feed.attention(TENANT)[0]["resumeAt"] is None
    rig.feed.resume(TENANT, "hook")
    rig.drain()
    wait_until(lambda: receiver.ids("/hook") == {"c1:1"}, what="the backlog after resume")
