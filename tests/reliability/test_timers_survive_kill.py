"""`waymark serve` killed (SIGKILL) with 50 timers pending, down past their due time, started again: every timer
fires once — late, never lost, never twice."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.domain import parse_time
from engine.queues.sqlite import SqliteCommandQueue
from tests.integration.test_serve import WAIT, Served, start
from tests.webhook_receiver import wait_until

pytestmark = pytest.mark.integration

TIMERS = 50
WORKFLOW = {
    "id": "escalation", "initialState": "awaiting",
    "states": {
        # All due at one time the test chooses, however long the fifty creations take on a busy machine.
        "awaiting": {"timeouts": [{"id": "escalate", "after": "context.dueAt", "trigger": {"topic": "escalate"}}],
                     "transitions": [{"id": "escalate", "trigger": "escalate", "target": "escalated"}]},
        "escalated": {"transitions": [{"id": "close", "trigger": "close", "target": "closed"}]},
        "closed": {},
    },
}


def _stop(served: Served) -> None:
    if served.process.poll() is None:
        served.process.kill()
    served.process.wait(10)
    if served.reader is not None:
        served.reader.join(5)
    if served.process.stdout is not None:
        served.process.stdout.close()


def test_a_killed_server_fires_all_fifty_pending_timers_once_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start(data)
    try:
        with first.client() as http:
            assert http.put("/tenants/demo/workflows/escalation", json=WORKFLOW).status_code in (200, 201)
            due = []
            due_at = (datetime.now(UTC) + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
            for n in range(TIMERS):
                response = http.post("/tenants/demo/instances", headers=WAIT,
                                     json={"workflowId": "escalation", "id": f"e-{n}", "context": {"dueAt": due_at}})
                assert response.status_code == 201, response.text
                due.append(parse_time(response.json()["timers"][0]["dueAt"]))
        first.process.send_signal(signal.SIGKILL)
    finally:
        _stop(first)
    with SqliteCommandQueue(data / "queue.db") as queue:
        assert queue.depth() == TIMERS, "all pending, none fired before the kill (created within 20 s?)"
    while datetime.now(UTC) <= max(due):  # they all fall due while the server is down
        time.sleep(0.1)

    second = start(data)
    try:
        with second.client() as http:
            def fired() -> list[list[dict[str, object]]]:
                histories = [http.get(f"/tenants/demo/instances/e-{n}/events").json()["items"] for n in range(TIMERS)]
                return [[e for e in history if e["type"] == "TimerFired"] for history in histories]

            wait_until(lambda: all(fired()), timeout=60, what="every timer to fire after the restart")
            with SqliteCommandQueue(data / "queue.db") as queue:
                wait_until(lambda: queue.depth() == 0, timeout=30, what="the queue to empty")
            per_instance = fired()
            assert all(len(events) == 1 for events in per_instance), "each timer fires exactly once"
            for n, (event,) in enumerate(per_instance):
                assert event["triggerId"] == f"e-{n}:1:escalate:1"
                assert str(event["at"]) >= str(event["data"]["dueAt"])  # type: ignore[index]
            states = {http.get(f"/tenants/demo/instances/e-{n}").json()["state"] for n in range(TIMERS)}
            assert states == {"escalated"}
        assert second.stop(signal.SIGINT) == 0
    finally:
        _stop(second)
