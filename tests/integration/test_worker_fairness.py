"""Fair command processing on the embedded engine (real SQLite queue and store, real worker threads, a real HTTP
service on loopback): a tenant whose commands are slow holds at most its share of the workers, the others' commands
keep flowing, a batch held up by a slow command is handed back, and nothing is lost, parked or poisoned."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain import Services
from engine.hosting.runtime import sqlite_engine
from engine.hosting.worker import WorkerPool
from engine.outbound import DestinationPolicy, OutboundClient
from engine.queues.base import Message
from engine.service.commands import CreateInstance, from_message, to_message
from engine.service.engine import Engine
from engine.service.fairness import BatchInProgress, HandBack, TenantGate, deferred_body
from engine.service.http_port import HttpxPort
from engine.service.worker import Worker
from tests.webhook_receiver import Receiver, wait_until

SLOW, FAST = "slowco", "fastco"


def _slow_workflow(url: str) -> dict[str, Any]:
    """Its creation calls a service that answers when the test lets it."""
    return {"id": "slow", "initialState": "calling",
            "states": {"calling": {"entryActions": [{"type": "http", "url": url, "timeoutSeconds": 30}],
                                   "transitions": [{"id": "stop", "trigger": "stop", "target": "done"}]},
                       "done": {}}}


@pytest.fixture
def rig(tmp_path: Path, receiver: Receiver, expense_claim: dict[str, Any]) -> Iterator[Engine]:
    http = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))  # the service is on loopback
    engine = sqlite_engine(tmp_path, services=Services(http=http))
    engine.catalog.put(SLOW, _slow_workflow(receiver.url("/tarpit")))
    engine.catalog.put(FAST, expense_claim)
    yield engine
    http.close()
    for part in (engine.events, engine.definitions, engine.queue, engine.parked_store):
        part.close()  # type: ignore[attr-defined]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _create(engine: Engine, tenant: str, workflow: str, instance_id: str) -> None:
    engine.queue.send(to_message(CreateInstance(tenant, instance_id, workflow, f"create-{instance_id}",
                                                context={"claimant": "K"})))


def _exists(engine: Engine, tenant: str, instance_id: str) -> bool:
    try:
        engine.events.load(tenant, instance_id)
    except Exception:
        return False
    return True


def test_a_slow_tenant_holds_one_worker_and_the_others_flow(rig: Engine, receiver: Receiver) -> None:
    hold = receiver.path("/tarpit").hold = threading.Event()
    for n in range(4):  # each batch of 4 holds one slow command: without the gate, three would run at once
        _create(rig, SLOW, "slow", f"s{n}")
        for m in range(3):
            _create(rig, FAST, "expense-claim", f"f{n * 3 + m}")
    for n in range(12, 30):
        _create(rig, FAST, "expense-claim", f"f{n}")
    pool = WorkerPool(rig, 3, tenant_workers=1, batch_size=4)
    pool.start()
    try:
        wait_until(lambda: all(_exists(rig, FAST, f"f{n}") for n in range(30)), timeout=30,
                   what="every command of the fast tenant while the slow one is held")
        assert receiver.path("/tarpit").most_held == 1  # never two of its commands at once
        assert not any(_exists(rig, SLOW, f"s{n}") for n in range(4))
        hold.set()
        wait_until(lambda: all(_exists(rig, SLOW, f"s{n}") for n in range(4)), timeout=30,
                   what="the slow tenant's commands once its service answers")
        wait_until(lambda: rig.queue.depth() == 0, what="the queue to empty")
    finally:
        hold.set()
        pool.stop(timeout=10)
    assert rig.queue.poisoned() == [] and rig.parked_store.list(SLOW).items == []  # type: ignore[attr-defined]
    assert receiver.path("/tarpit").most_held == 1
    assert len(receiver.requests("/tarpit")) == 4  # each command ran once: deferrals are not attempts


def test_a_batch_held_up_by_a_slow_command_is_handed_back(rig: Engine, receiver: Receiver) -> None:
    hold = receiver.path("/tarpit").hold = threading.Event()
    _create(rig, SLOW, "slow", "s0")
    for n in range(5):
        _create(rig, FAST, "expense-claim", f"f{n}")
    worker = Worker(rig.queue, rig.processor, failures=rig.failures, gate=TenantGate(1))
    messages = rig.queue.receive(max_messages=6)
    assert [m.body["tenant"] for m in messages] == [SLOW] + [FAST] * 5
    busy = threading.Thread(target=worker.process_batch, args=(messages,))
    busy.start()
    try:
        wait_until(lambda: receiver.path("/tarpit").held == 1, what="the slow command to start")
        watchdog = HandBack(rig.queue, lambda: [worker.batch], after=0.0)
        assert watchdog.once() == 5
        other = Worker(rig.queue, rig.processor, failures=rig.failures)
        assert other.run_once() == 5  # the copies, at once
        assert all(_exists(rig, FAST, f"f{n}") for n in range(5))
    finally:
        hold.set()
        busy.join(30)
    assert _exists(rig, SLOW, "s0") and rig.queue.depth() == 0


def test_the_gate_waits_briefly_then_refuses() -> None:
    gate = TenantGate(2, wait=0.05)
    assert gate.enter("a") and gate.enter("a")
    assert not gate.enter("a")  # at its limit
    assert gate.enter("b")  # another tenant is not affected
    freed = threading.Timer(0.01, gate.leave, args=("a",))
    freed.start()
    assert gate.enter("a", wait=5.0)  # a slot freed while it waited
    freed.join()
    assert gate.busy("a") == 2
    with gate.slot(None) as entered:
        assert entered


def test_a_tenant_whose_command_is_slow_is_refused_at_once() -> None:
    now = [0.0]
    gate = TenantGate(1, wait=0.25, monotonic=lambda: now[0])
    assert gate.enter("a")
    now[0] = 5.0  # its command has run 5 s: no use waiting for it
    assert not gate.enter("a")
    gate.leave("a")
    assert gate.enter("a")


def test_a_deferred_command_waits_longer_each_time() -> None:
    body: dict[str, Any] = {"kind": "trigger", "tenant": "a"}
    delays = []
    for _ in range(8):
        body, delay = deferred_body(body)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] and body["deferred"] == 8
    assert from_message({**to_message(CreateInstance("a", "i", "w", "t")), "deferred": 3}) == CreateInstance(
        "a", "i", "w", "t")


def test_a_batch_handed_back_is_not_started_by_its_worker() -> None:
    messages = [Message(str(n), {"tenant": "t"}, 1, "r") for n in range(3)]
    now = [0.0]
    batch = BatchInProgress(messages, monotonic=lambda: now[0])
    assert batch.begin(1)
    assert batch.take_if_stuck(1.0) == []  # not yet
    now[0] = 2.0
    assert [m.id for m in batch.take_if_stuck(1.0)] == ["1", "2"]
    batch.end()
    assert batch.unstarted() == [] and not batch.begin(1)
