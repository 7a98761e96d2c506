"""kill -9 of the worker process at random points during a stream of triggers: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.domain import Trigger
from engine.feed import ChangeFeed, SqliteSubscriptionStore, WebhookPublisher
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.tenants import SqliteTenantRegistry, read_or_create_secret
from tests.webhook_receiver import Receiver, wait_until

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
INSTANCES = [f"claim-{n}" for n in range(6)]
KILLS = 20


def _worker(data_dir: Path, *, capture: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAYMARK_VISIBILITY_TIMEOUT": "1", "WAYMARK_MAX_DEQUEUE_COUNT": "1000",
           "WAYMARK_WORKERS": "2", "WAYMARK_FEED_GRACE_SECONDS": "1", "WAYMARK_FEED_SWEEP_SECONDS": "0.5",
           "WAYMARK_LOG_LEVEL": "error"}
    return subprocess.Popen([sys.executable, "-m", "engine.hosting.worker", str(data_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if capture else subprocess.DEVNULL)


def test_twenty_kills_lose_nothing_apply_nothing_twice_and_publish_everything(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    registry = SqliteTenantRegistry(tmp_path / "tenants.db", secret=read_or_create_secret(tmp_path / "secret")[0])
    registry.create(T)
    registry.close()
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    receiver = Receiver()
    subscriptions = SqliteSubscriptionStore(tmp_path)
    feed = ChangeFeed(engine.events, subscriptions, webhook=WebhookPublisher(allow_private_destinations=True))
    feed.subscribe(T, "audit", endpoint=receiver.url("/audit"))
    feed.close()
    subscriptions.close()
    for instance_id in INSTANCES:
        engine.processor.create(CreateInstance(T, instance_id, "expense-claim", f"create-{instance_id}",
                                               context={"claimant": "ann"}))
    accepted: list[tuple[str, str]] = []
    producing = threading.Event()
    producing.set()

    def produce() -> None:
        n = 0
        while producing.is_set():
            instance_id = INSTANCES[n % len(INSTANCES)]
            trigger = Trigger("update", f"t-{n}", {"amount": n})
            engine.queue.send(to_message(SendTrigger(T, instance_id, trigger)))
            accepted.append((instance_id, trigger.id))
            n += 1
            time.sleep(0.004)

    producer = threading.Thread(target=produce)
    producer.start()
    rng = random.Random(20261121)
    kills = 0
    try:
        while kills < KILLS:
            worker = _worker(tmp_path)
            time.sleep(rng.uniform(0.3, 1.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            kills += 1
    finally:
        producing.clear()
        producer.join()

    final = _worker(tmp_path, capture=True)
    try:
        deadline = time.monotonic() + 60
        while engine.queue.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        # Every stored event reaches the subscriber at least once: the final worker's sweeper republishes what the
        # killed ones committed but did not mark dispatched.
        stored = {f"{e.instance_id}:{e.sequence}" for i in INSTANCES for e in engine.events.read(T, i)}
        wait_until(lambda: stored <= receiver.ids("/audit"), timeout=60, what="every stored event published")
        wait_until(lambda: not engine.events.undispatched(T, limit=10), timeout=30, what="every commit dispatched")
        final.send_signal(signal.SIGINT)
        _, stderr = final.communicate(timeout=30)
        assert final.returncode == 0, stderr.decode()
    finally:
        receiver.close()
        if final.poll() is None:  # a failed check must not leave the worker running
            final.kill()
            final.communicate(timeout=10)
    assert engine.queue.depth() == 0
    assert engine.queue.poisoned() == []

    assert kills == KILLS and len(accepted) > 200
    recorded: dict[str, list[str]] = {}
    for instance_id in INSTANCES:
        events = engine.events.read(T, instance_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "sequences are gapless"
        recorded[instance_id] = [e.trigger_id for e in events[1:] if e.trigger_id]
    for instance_id in INSTANCES:
        expected = [trigger_id for owner, trigger_id in accepted if owner == instance_id]
        assert sorted(recorded[instance_id]) == sorted(expected), "every accepted trigger exactly once"
