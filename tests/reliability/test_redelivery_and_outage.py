"""Each trigger delivered three times applies once; a store that is away for a while loses no trigger."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from engine.domain import Trigger
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
T = "acme"


def _engine(data_dir: Path, *, busy_timeout: float = 10.0) -> Engine:
    engine = sqlite_engine(data_dir, busy_timeout=busy_timeout)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance(T, "claim", "expense-claim", "create", context={"claimant": "ann"}))
    return engine


def test_each_trigger_delivered_three_times_is_applied_once(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    for n in range(20):
        message = to_message(SendTrigger(T, "claim", Trigger("update", f"t-{n}", {"amount": n})))
        for _ in range(3):
            engine.queue.send(message)
    worker = Worker(engine.queue, engine.processor, visibility_timeout=5)
    while worker.run_once():
        pass
    events = engine.events.read(T, "claim")
    assert [e.trigger_id for e in events[1:]] == [f"t-{n}" for n in range(20)]
    assert engine.queue.depth() == 0


def test_triggers_wait_while_the_store_is_locked_and_complete_afterwards(tmp_path: Path) -> None:
    engine = _engine(tmp_path, busy_timeout=0.1)
    for n in range(10):
        engine.queue.send(to_message(SendTrigger(T, "claim", Trigger("update", f"t-{n}", {"amount": n}))))
    # Another process holds the tenant's database: every write fails with "database is locked".
    blocker = sqlite3.connect(tmp_path / "tenants" / f"{T}.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    worker = Worker(engine.queue, engine.processor, visibility_timeout=2, idle_wait=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(1.5)
        assert engine.queue.depth() == 10, "nothing is completed while the store is away"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _every_trigger_applied_once_the_store_is_back(engine, stop, thread)
    assert engine.queue.poisoned() == []


def _every_trigger_applied_once_the_store_is_back(engine: Engine, stop: threading.Event,
                                                  thread: threading.Thread) -> None:
    """Let the worker empty the queue (30 s at most), stop it, and find the ten triggers applied, each once."""
    deadline = time.monotonic() + 30
    while engine.queue.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    events = engine.events.read(T, "claim")
    assert sorted(e.trigger_id for e in events[1:]) == sorted(f"t-{n}" for n in range(10))

def test_an_outage_longer_than_the_retries_is_held_locally_not_poisoned(tmp_path: Path) -> None:
    """The SQLite queue's not-before time holds each command while the tenant's file stays locked, far longer than
    max_dequeue_count (2 here) retries would last: nothing is poisoned or parked, and everything applies after."""
    from engine.service.failures import CommandFailures
    from engine.service.holding import CircuitBreakers, HoldPolicy

    engine = sqlite_engine(tmp_path, busy_timeout=0.05, max_dequeue_count=2)
    breakers = CircuitBreakers(threshold=2, cooldown=0.1, max_cooldown=0.2)
    failures = CommandFailures(engine.parked, breakers, lambda body, delay: engine.queue.send(body, delay=delay),
                               HoldPolicy(base_delay=0.05, max_delay=0.2, hold_seconds=3600), max_dequeue_count=2)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance(T, "claim", "expense-claim", "create", context={"claimant": "ann"}))
    for n in range(10):
        engine.queue.send(to_message(SendTrigger(T, "claim", Trigger("update", f"t-{n}", {"amount": n}))))
    blocker = sqlite3.connect(tmp_path / "tenants" / f"{T}.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    worker = Worker(engine.queue, engine.processor, visibility_timeout=2, idle_wait=0.02, failures=failures)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(3)  # ~15 holds of each command: at 2 deliveries each, the queue would have poisoned them all
        assert engine.queue.poisoned() == [] and engine.queue.depth() == 10
        assert breakers.states()[T]["state"] in ("open", "half-open")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    _every_trigger_applied_once_the_store_is_back(engine, stop, thread)
    assert engine.queue.poisoned() == [] and engine.parked.list(T).items == []
    assert breakers.states() == {}
