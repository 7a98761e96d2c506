"""Seed ADR 2's three out-of-sync scenarios cannot happen: a failure injected at each step of commit, index,
outbox and queue leaves a state the store, the index and the feed agree on once retries and the sweeper ran.

The failures are real ones, on the real SQLite store: a SQLite trigger aborts the commit transaction half way
(after the commit row, at the instance/index row or at the interests index), the publisher fails after the
commit, the outbox mark fails after the events were delivered, and the queue's completion fails after
everything was stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.domain import Trigger, fold
from engine.feed import ChangeFeed, MemorySubscriptionStore, RetryPolicy, WebhookPublisher
from engine.hosting.runtime import sqlite_engine
from engine.queues.base import Message
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.worker import Worker
from tests.webhook_receiver import Receiver, wait_until

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
SQL_FAULTS = {
    "commit row": ["BEFORE INSERT ON commits"],
    "instance and index row": ["BEFORE INSERT ON instances", "BEFORE UPDATE ON instances"],
    "interests index": ["BEFORE INSERT ON interests"],
}


class Chaos:
    """Failures switched on for the next N occurrences of a step."""

    def __init__(self) -> None:
        self.remaining: dict[str, int] = {}

    def arm(self, step: str, times: int = 1) -> None:
        self.remaining[step] = times

    def hit(self, step: str) -> None:
        if self.remaining.get(step, 0) > 0:
            self.remaining[step] -= 1
            raise RuntimeError(f"injected failure at {step}")


class FlakyQueue:
    """The real SQLite queue, whose completion can be made to fail (as after a crash, before the delete)."""

    def __init__(self, queue: Any, chaos: Chaos) -> None:
        self.queue, self.chaos = queue, chaos

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    def complete(self, message: Message) -> None:
        self.chaos.hit("queue complete")
        self.queue.complete(message)

    def complete_many(self, messages: Sequence[Message]) -> list[Message]:
        self.chaos.hit("queue complete")
        lost: list[Message] = self.queue.complete_many(messages)
        return lost


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Engine, ChangeFeed, Receiver, Chaos, Path]]:
    chaos = Chaos()
    receiver = Receiver()
    engine = sqlite_engine(tmp_path, busy_timeout=0.5)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    webhook = WebhookPublisher(origin="waymark.test", allow_private_destinations=True, timeout=5.0,
                               retry=RetryPolicy(attempts=2, base_delay=0.005, max_delay=0.01, max_retry_after=1.0))

    def before_mark(tenant: str, positions: Sequence[int]) -> None:
        chaos.hit("outbox mark")

    feed = ChangeFeed(engine.events, MemorySubscriptionStore(), definitions=engine.catalog, webhook=webhook,
                      tenants=lambda: [T], grace_seconds=0.0, cache_seconds=0.0, before_mark=before_mark)
    feed.subscribe(T, "audit", endpoint=receiver.url("/audit"))
    real_on_commit = feed.on_commit

    def on_commit(tenant: str, commit: Any) -> None:
        chaos.hit("publish")
        real_on_commit(tenant, commit)

    engine.processor.on_commit = on_commit
    yield engine, feed, receiver, chaos, tmp_path
    feed.close(timeout=2.0)
    receiver.close()


def _arm_sql(data_dir: Path, clauses: list[str]) -> sqlite3.Connection:
    connection = sqlite3.connect(data_dir / "tenants" / f"{T}.db", isolation_level=None)
    for n, clause in enumerate(clauses):
        connection.execute(f"CREATE TRIGGER chaos{n} {clause} BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
    return connection


def _disarm_sql(connection: sqlite3.Connection) -> None:
    for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        connection.execute(f"DROP TRIGGER {name}")
    connection.close()


def _drain(worker: Worker, engine: Engine, timeout: float = 30.0) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: engine.queue.depth() == 0, timeout=timeout, what="the queue to drain")
    finally:
        stop.set()
        thread.join(10)


def _agree(engine: Engine, feed: ChangeFeed, receiver: Receiver, instance_ids: list[str]) -> None:
    """The store, the index and the feed tell the same story."""
    feed.sweeper.sweep_once(wait=10)
    assert feed.dispatcher.drain(10)
    for instance_id in instance_ids:
        events = engine.events.read(T, instance_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        trigger_ids = [e.trigger_id for e in events]
        assert len(trigger_ids) == len(set(trigger_ids)), "no trigger applied twice"
        instance = engine.events.load(T, instance_id)
        assert fold(None, events) == instance, "the snapshot is the fold of the log"
        listed = engine.events.list_instances(T, state=instance.state, status=str(instance.status)).items
        assert instance in listed, "the index agrees with the log"
        for subject in instance.interests:
            assert instance_id in engine.events.interested(T, [subject])
        wanted = {f"{instance_id}:{e.sequence}" for e in events}
        wait_until(lambda wanted=wanted: wanted <= receiver.ids("/audit"), what="every event published")  # type: ignore[misc]

    def all_dispatched() -> bool:
        if not engine.events.undispatched(T, limit=1000):
            return True
        feed.sweeper.sweep_once(wait=10)  # marks are written in batches, after delivery
        return False

    wait_until(all_dispatched, timeout=20, what="no commit left undispatched")


@pytest.mark.parametrize("step", list(SQL_FAULTS))
def test_a_commit_that_fails_half_way_writes_nothing_and_is_retried(
        rig: tuple[Engine, ChangeFeed, Receiver, Chaos, Path], step: str) -> None:
    engine, feed, receiver, _, data_dir = rig
    engine.processor.create(CreateInstance(T, "ok", "expense-claim", "c-ok", context={"claimant": "ann"},
                                           interests=("team:a",)))
    engine.queue.send(to_message(CreateInstance(T, "claim", "expense-claim", "c-1", context={"claimant": "bob"},
                                                interests=("team:b",))))
    engine.queue.send(to_message(SendTrigger(T, "ok", Trigger("update", "u-1", {"amount": 5}))))
    worker = Worker(engine.queue, engine.processor, visibility_timeout=1, idle_wait=0.01)
    chaos_db = _arm_sql(data_dir, SQL_FAULTS[step])
    try:
        worker.run_once()  # the commands that reach the failing step fail in the middle of their commit
        claim_written = len(engine.events.read(T, "claim"))
        trigger_written = len(engine.events.read(T, "ok")) - 1
        assert claim_written in (0, 1) and trigger_written in (0, 1), "a commit is whole or absent"
        assert claim_written + trigger_written < 2, "the failure was injected"
        assert engine.queue.depth() == 2 - claim_written - trigger_written, "a failed command is still queued"
    finally:
        _disarm_sql(chaos_db)
    _drain(worker, engine)
    _agree(engine, feed, receiver, ["ok", "claim"])


@pytest.mark.parametrize("step", ["publish", "outbox mark", "queue complete"])
def test_a_failure_after_the_commit_is_repaired(rig: tuple[Engine, ChangeFeed, Receiver, Chaos, Path],
                                               step: str) -> None:
    engine, feed, receiver, chaos, _ = rig
    engine.processor.create(CreateInstance(T, "ok", "expense-claim", "c-ok", context={"claimant": "ann"}))
    queue = FlakyQueue(engine.queue, chaos)
    for n in range(3):
        engine.queue.send(to_message(SendTrigger(T, "ok", Trigger("update", f"u-{n}", {"amount": n}))))
    chaos.arm(step, times=1)
    worker = Worker(queue, engine.processor, visibility_timeout=1, idle_wait=0.01)  # type: ignore[arg-type]
    _drain(worker, engine)
    _agree(engine, feed, receiver, ["ok"])
    assert chaos.remaining[step] == 0, "the failure was injected"
