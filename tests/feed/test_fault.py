"""The fault test: a worker process is killed (SIGKILL) after appending and before marking dispatched. After a
restart the receiver has every event at least once and no commit stays undispatched."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.domain import Trigger
from engine.feed import SqliteSubscriptionStore, Subscription, SubscriptionStatus
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import CreateInstance, SendTrigger, to_message
from tests.feed.helpers import TENANT
from tests.webhook_receiver import Receiver

SCRIPT = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _run(data_dir: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(data_dir), mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_a_worker_killed_before_marking_loses_no_event(receiver: Receiver, tmp_path: Path,
                                                       expense_claim: dict[str, Any]) -> None:
    engine = sqlite_engine(tmp_path)
    engine.catalog.put(TENANT, expense_claim)
    store = SqliteSubscriptionStore(tmp_path)
    store.save(TENANT, Subscription(name="hook", endpoint=receiver.url("/hook"), status=SubscriptionStatus.ACTIVE))
    store.close()
    for n in range(6):
        claim = f"claim-{n}"
        engine.queue.send(to_message(CreateInstance(TENANT, claim, "expense-claim", f"create-{n}",
                                                    context={"claimant": "J George"})))
        engine.queue.send(to_message(SendTrigger(TENANT, claim, Trigger("update", f"u-{n}", {"amount": n + 1}))))
        engine.queue.send(to_message(SendTrigger(TENANT, claim, Trigger("submit", f"s-{n}", {}))))

    crashed = _run(tmp_path, "crash")
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stdout, crashed.stderr)
    appended = engine.events.read_feed(TENANT, limit=1000)
    assert appended, "the worker appended before it was killed"
    assert engine.events.undispatched(TENANT, limit=1000), "killed before marking: commits are undispatched"

    recovered = _run(tmp_path, "recover")
    assert recovered.returncode == 0, (recovered.returncode, recovered.stdout, recovered.stderr)

    commits = engine.events.read_feed(TENANT, limit=1000)
    assert len(commits) == 18  # every command was processed once: 6 creations and 12 triggers
    assert engine.events.undispatched(TENANT, limit=1000) == []
    expected = {f"{e.instance_id}:{e.sequence}" for c in commits for e in c.events}
    assert receiver.ids("/hook") == expected  # every event at least once
    assert len(receiver.events("/hook")) >= len(expected)
