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
from engine.runtime import sqlite_engine
from engine.service.commands import CreateInstance, SendTrigger, to_message

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
INSTANCES = [f"claim-{n}" for n in range(6)]
KILLS = 20


def _worker(data_dir: Path, *, capture: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAYMARK_VISIBILITY_TIMEOUT": "1", "WAYMARK_MAX_DEQUEUE_COUNT": "1000",
           "WAYMARK_WORKERS": "2"}
    return subprocess.Popen([sys.executable, "-m", "engine.service.worker_process", str(data_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if capture else subprocess.DEVNULL)


def test_twenty_kills_lose_nothing_and_apply_nothing_twice(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
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
    deadline = time.monotonic() + 60
    while engine.queue.depth() and time.monotonic() < deadline:
        time.sleep(0.1)
    final.send_signal(signal.SIGINT)
    _, stderr = final.communicate(timeout=30)
    assert final.returncode == 0, stderr.decode()
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
