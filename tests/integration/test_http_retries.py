"""An `http` action's retry never sleeps in a worker: its command goes back on the queue with the backoff as its
delay, the worker goes on with other commands, and the step's idempotency key stays the same on every attempt and
on a recovery's retry of the step. A real receiver on loopback, the real outbound client, the real worker and
failure policy, over a memory queue whose clock the test steps (so no test waits out a backoff)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.domain import Outcome, RecoveryMode, Services, Status, Trigger
from engine.outbound import DestinationPolicy, OutboundClient
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.http_port import HttpxPort
from engine.service.worker import Worker
from engine.stores.memory import MemoryDefinitionStore, MemoryEventStore
from tests.webhook_receiver import Receiver, Reply

T = "acme"
PAY = "$.states.due.transitions[0].actions[0]"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def rig(receiver: Receiver) -> Iterator[tuple[Engine, Worker, Clock]]:
    clock = Clock()
    queue = MemoryCommandQueue(clock=clock)
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))  # the receiver is on loopback
    engine = Engine(MemoryEventStore(), MemoryDefinitionStore(), queue, services=Services(http=port))
    engine.catalog.put(T, {"id": "pay", "initialState": "due", "states": {
        "due": {"transitions": [
            {"id": "pay", "trigger": "pay", "target": "paid", "actions": [
                {"type": "http", "url": receiver.url("/pay"), "retries": 2, "backoffSeconds": 30}]},
            {"id": "note", "trigger": "note", "target": "due",
             "actions": [{"type": "set-context", "values": {"noted": "true"}}]}]},
        "paid": {}}})
    worker = Worker(queue, engine.processor, failures=engine.failures)
    for instance_id in ("i1", "i2"):
        queue.send(to_message(CreateInstance(T, instance_id, "pay", f"create-{instance_id}")))
    while worker.run_once():
        pass
    yield engine, worker, clock
    port.close()


def _send(engine: Engine, instance_id: str, topic: str) -> None:
    engine.queue.send(to_message(SendTrigger(T, instance_id, Trigger(topic, f"{topic}-{instance_id}"))))


def test_a_retry_goes_back_on_the_queue_and_the_worker_goes_on(receiver: Receiver,
                                                               rig: tuple[Engine, Worker, Clock]) -> None:
    engine, worker, clock = rig
    receiver.script("/pay", Reply(503), Reply(503), Reply(200))
    _send(engine, "i1", "pay")
    _send(engine, "i2", "note")
    assert worker.run_once() == 2  # i1's first attempt fails; i2 is applied all the same, by the same worker
    assert len(receiver.requests("/pay")) == 1
    assert engine.events.load(T, "i2").context == {"noted": True}
    assert engine.events.load(T, "i1").state == "due", "nothing stored for the failed attempt"
    assert engine.queue.depth() == 1 and worker.run_once() == 0, "the retry waits on the queue, not in a thread"
    clock.now += 29
    assert worker.run_once() == 0, "not before its backoff (30 s)"
    clock.now += 1
    assert worker.run_once() == 1 and len(receiver.requests("/pay")) == 2  # the second attempt: 503 again
    clock.now += 59
    assert worker.run_once() == 0, "the backoff doubles (60 s)"
    clock.now += 1
    assert worker.run_once() == 1
    instance = engine.events.load(T, "i1")
    assert (instance.state, instance.status) == ("paid", Status.COMPLETE)
    keys = {request.headers["idempotency-key"] for request in receiver.requests("/pay")}
    assert keys == {f"i1:2:{PAY}"}, "one key per step and action path, the same on every attempt"


def test_after_the_last_attempt_the_instance_faults(receiver: Receiver, rig: tuple[Engine, Worker, Clock]) -> None:
    engine, worker, clock = rig
    receiver.script("/pay", Reply(500), Reply(502), Reply(503), Reply(200))
    _send(engine, "i1", "pay")
    for _ in range(3):
        worker.run_once()
        clock.now += 60
    instance = engine.events.load(T, "i1")
    assert instance.status is Status.FAULTED and instance.fault is not None
    assert instance.fault.message == (f"POST {receiver.url('/pay')} answered with a server error (5xx) "
                                      "(after 3 attempts)")
    assert len(receiver.requests("/pay")) == 3 and engine.queue.depth() == 0
    # A recovery's retry of the step sends the same key: the service can tell it is the same payment.
    result = engine.processor.recover(T, "i1", mode=RecoveryMode.RETRY, by="ops", reason="fixed",
                                      recovery_id="r-1")
    assert result.outcome is Outcome.APPLIED
    keys = [request.headers["idempotency-key"] for request in receiver.requests("/pay")]
    assert keys == [f"i1:2:{PAY}"] * 4


def test_each_http_action_of_a_step_has_its_own_key(receiver: Receiver) -> None:
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))
    queue = MemoryCommandQueue()
    engine = Engine(MemoryEventStore(), MemoryDefinitionStore(), queue, services=Services(http=port))
    calls: list[dict[str, Any]] = [{"type": "http", "url": receiver.url(f"/{n}"), "retries": 0} for n in range(2)]
    engine.catalog.put(T, {"id": "two", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "b", "actions": calls}]},
        "b": {"entryActions": [{"type": "http", "url": receiver.url("/2"), "retries": 0}]}}})
    worker = Worker(queue, engine.processor, failures=engine.failures)
    queue.send(to_message(CreateInstance(T, "i", "two", "c")))
    queue.send(to_message(SendTrigger(T, "i", Trigger("go", "g"))))
    while worker.run_once():
        pass
    port.close()
    keys = [receiver.requests(f"/{n}")[0].headers["idempotency-key"] for n in range(3)]
    assert keys == ["i:2:$.states.a.transitions[0].actions[0]", "i:2:$.states.a.transitions[0].actions[1]",
                    "i:2:$.states.b.entryActions[0]"]
