"""The command queue contract (engine/queues/base.py): every adapter passes this one suite.

Adapters are built in one place, `open_queue`, from a picklable `QueueSpec` (so a spawned process can open
the same queue), and handed to tests by the `adapter` fixture. Tests never sleep for an exact time: they
poll with a deadline, and the visibility timeouts they wait out are `adapter.short_timeout`, which an
adapter with coarse timeouts (Azure: whole seconds) sets to 1.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from engine.domain.errors import StoreUnavailable
from engine.queues.azure import MAX_BODY_BYTES, AzureStorageCommandQueue, MessageTooLarge
from engine.queues.base import CommandQueue, Message, MessageLost
from engine.queues.memory import MemoryCommandQueue
from engine.queues.sqlite import SqliteCommandQueue
from tests import azure_fixtures
from tests.azure_fixtures import AzuriteServer

MAX_DEQUEUE_COUNT = 3
MARGIN = 5.0  # how long past a timeout a poll may wait before the test fails; only spent on failure


@dataclass(frozen=True)
class QueueSpec:
    kind: str
    location: str = ""  # sqlite: the file; azure: the storage connection string
    name: str = ""  # azure: the queue (one per test, so tests share one Azurite without seeing each other)


def open_queue(spec: QueueSpec) -> CommandQueue:
    """Open a client of the queue `spec` names. The one place adapters are constructed."""
    if spec.kind == "sqlite":
        return SqliteCommandQueue(Path(spec.location), max_dequeue_count=MAX_DEQUEUE_COUNT)
    if spec.kind == "azure":
        return AzureStorageCommandQueue.from_connection_string(
            spec.location, spec.name, max_dequeue_count=MAX_DEQUEUE_COUNT, create_queues=True
        )
    raise ValueError(f"{spec.kind} queues cannot be opened again from a spec")


@dataclass
class Adapter:
    spec: QueueSpec
    queue: CommandQueue
    short_timeout: float  # a visibility timeout the adapter honours, short enough to wait out
    across_processes: bool  # whether another process can open the same queue
    _clients: list[CommandQueue] = field(default_factory=list)

    def another_client(self) -> CommandQueue:
        """A second client of the same queue, as another worker would hold (the memory queue has only one)."""
        if self.spec.kind == "memory":
            return self.queue
        client = open_queue(self.spec)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in [*self._clients, self.queue]:
            close_client(client)


def close_client(queue: CommandQueue) -> None:
    queue.close()


@pytest.fixture(params=["memory", "sqlite", "azure"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    if request.param == "memory":
        spec = QueueSpec("memory")
        under_test = Adapter(spec, MemoryCommandQueue(max_dequeue_count=MAX_DEQUEUE_COUNT), 0.2, False)
    elif request.param == "sqlite":
        spec = QueueSpec("sqlite", str(tmp_path / "queue.db"))
        under_test = Adapter(spec, open_queue(spec), 0.2, True)
    elif request.param == "azure":
        # Azurite is started once per session, and only when an azure test runs (tests/azure_fixtures.py).
        azurite = request.getfixturevalue("azurite")
        spec = QueueSpec("azure", azurite.connection_string, f"contract-{uuid.uuid4().hex[:16]}")
        under_test = Adapter(spec, open_queue(spec), 1.0, True)  # visibility timeouts are whole seconds
    else:
        raise ValueError(request.param)
    try:
        yield under_test
    finally:
        under_test.close()


@pytest.fixture
def queue(adapter: Adapter) -> CommandQueue:
    return adapter.queue


def receive_within(queue: CommandQueue, seconds: float, **options: Any) -> list[Message]:
    """Receive, polling until something comes or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        received = queue.receive(**options)
        if received or time.monotonic() >= deadline:
            return received
        time.sleep(0.02)


def receive_one(queue: CommandQueue, seconds: float, **options: Any) -> Message:
    received = receive_within(queue, seconds, **options)
    assert len(received) == 1, f"expected one message within {seconds} s, got {received}"
    return received[0]


# --- basics -----------------------------------------------------------------------------------------------


def test_send_receive_complete(queue: CommandQueue) -> None:
    message_id = queue.send({"command": "create", "instanceId": "claim-42"})

    message = receive_one(queue, MARGIN)

    assert message.id == message_id
    assert message.body == {"command": "create", "instanceId": "claim-42"}
    assert message.dequeue_count == 1
    assert message.receipt
    queue.complete(message)
    assert queue.depth() == 0
    assert queue.receive() == []
    with pytest.raises(MessageLost):
        queue.complete(message)


def test_messages_come_out_in_the_order_they_went_in(queue: CommandQueue) -> None:
    sent = [queue.send({"n": n}) for n in range(10)]

    one_at_a_time = [receive_one(queue, MARGIN, visibility_timeout=30) for _ in range(4)]
    batch = receive_within(queue, MARGIN, max_messages=6, visibility_timeout=30)

    assert [m.id for m in one_at_a_time + batch] == sent
    assert [m.body["n"] for m in one_at_a_time + batch] == list(range(10))


def test_depth_counts_held_messages(queue: CommandQueue) -> None:
    assert queue.depth() == 0
    for n in range(3):
        queue.send({"n": n})
    assert queue.depth() == 3

    held = receive_one(queue, MARGIN, visibility_timeout=30)
    assert queue.depth() == 3

    queue.complete(held)
    assert queue.depth() == 2


def test_complete_many_deletes_a_batch_and_answers_the_stale_receipts(queue: CommandQueue) -> None:
    sent = [queue.send({"n": n}) for n in range(3)]
    held = receive_within(queue, MARGIN, max_messages=3, visibility_timeout=30)
    assert [m.id for m in held] == sent
    queue.release(held[1])  # its receipt is spent: completing it now must not delete it

    lost = queue.complete_many(held)

    assert lost == [held[1]]
    assert queue.depth() == 1
    again = receive_one(queue, MARGIN, visibility_timeout=30)
    assert (again.id, again.dequeue_count) == (sent[1], 2)
    assert queue.complete_many([again]) == []
    assert queue.complete_many([]) == []
    assert queue.depth() == 0


def test_bodies_round_trip_as_json(queue: CommandQueue) -> None:
    body = {
        "text": "Zoë → 東京 ✓ 🚀",
        "quote": 'she said "hi"\n\ttab \\ backslash',
        "int": 2**53,
        "float": 12.5,
        "negative": -0.001,
        "flags": [True, False, None],
        "nested": {"deeper": {"list": [1, "two", {"three": 3}]}, "empty": {}},
        "emptyList": [],
    }
    queue.send(body)
    queue.send(MappingProxyType({"mapping": "not a dict"}))

    first, second = receive_within(queue, MARGIN, max_messages=2)

    assert first.body == body
    assert isinstance(second.body, dict)
    assert second.body == {"mapping": "not a dict"}


def test_a_body_that_is_not_json_is_refused_at_send(queue: CommandQueue) -> None:
    with pytest.raises(TypeError):
        queue.send({"when": object()})
    assert queue.depth() == 0


def test_send_with_delay(adapter: Adapter, queue: CommandQueue) -> None:
    message_id = queue.send({"later": True}, delay=adapter.short_timeout)

    assert queue.receive() == []
    assert queue.depth() == 1
    assert receive_one(queue, adapter.short_timeout + MARGIN).id == message_id


def test_a_delayed_message_never_holds_back_the_ones_sent_after_it(adapter: Adapter, queue: CommandQueue) -> None:
    queue.send({"n": "far"}, delay=3600)
    queue.send({"n": "later"}, delay=adapter.short_timeout)
    now_id = queue.send({"n": "now"})
    assert [m.id for m in queue.receive(max_messages=5)] == [now_id]
    assert receive_one(queue, adapter.short_timeout + MARGIN, max_messages=5).body == {"n": "later"}
    assert queue.depth() == 3  # the far one is waiting still; received ones are held until completed


# --- visibility, receipts, retries ------------------------------------------------------------------------


def test_a_held_message_is_invisible_then_comes_back(adapter: Adapter, queue: CommandQueue) -> None:
    message_id = queue.send({"n": 1})

    first = receive_one(queue, MARGIN, visibility_timeout=adapter.short_timeout)
    assert queue.receive() == []

    again = receive_one(queue, adapter.short_timeout + MARGIN, visibility_timeout=30)
    assert again.id == message_id
    assert again.body == {"n": 1}
    assert again.dequeue_count == first.dequeue_count + 1 == 2
    assert again.receipt != first.receipt
    queue.complete(again)
    assert queue.depth() == 0


def test_a_stale_receipt_is_refused_and_the_message_is_kept(adapter: Adapter, queue: CommandQueue) -> None:
    queue.send({"n": 1})
    first = receive_one(queue, MARGIN, visibility_timeout=adapter.short_timeout)
    second = receive_one(queue, adapter.short_timeout + MARGIN, visibility_timeout=30)

    with pytest.raises(MessageLost):
        queue.complete(first)
    with pytest.raises(MessageLost):
        queue.release(first)
    assert queue.depth() == 1

    queue.complete(second)
    assert queue.depth() == 0


def test_release_makes_a_message_visible_again(adapter: Adapter, queue: CommandQueue) -> None:
    message_id = queue.send({"n": 1})
    first = receive_one(queue, MARGIN, visibility_timeout=30)

    queue.release(first)

    second = receive_one(queue, MARGIN, visibility_timeout=30)
    assert (second.id, second.dequeue_count) == (message_id, 2)
    with pytest.raises(MessageLost):
        queue.complete(first)  # released: the first receiver has let go
    queue.complete(second)
    assert queue.depth() == 0


def test_release_with_delay(adapter: Adapter, queue: CommandQueue) -> None:
    message_id = queue.send({"n": 1})
    first = receive_one(queue, MARGIN, visibility_timeout=30)

    queue.release(first, delay=adapter.short_timeout)

    assert queue.receive() == []
    with pytest.raises(MessageLost):
        queue.complete(first)
    second = receive_one(queue, adapter.short_timeout + MARGIN, visibility_timeout=30)
    assert (second.id, second.dequeue_count) == (message_id, 2)
    queue.complete(second)


# --- poison -----------------------------------------------------------------------------------------------


def poison(queue: CommandQueue, body: dict[str, Any]) -> str:
    """Send `body` and receive it `MAX_DEQUEUE_COUNT` times without completing it; the next receive poisons it."""
    message_id = queue.send(body)
    for count in range(1, MAX_DEQUEUE_COUNT + 1):
        message = receive_one(queue, MARGIN, visibility_timeout=30)
        assert (message.id, message.dequeue_count) == (message_id, count)
        queue.release(message)
    assert receive_within(queue, 0.3) == []
    return message_id


def test_a_message_received_too_often_is_poisoned_not_dropped(queue: CommandQueue) -> None:
    body = {"command": "trigger", "topic": "sübmit"}
    message_id = poison(queue, body)

    assert queue.receive() == []
    assert queue.depth() == 0
    [poisoned] = queue.poisoned()
    assert poisoned.id == message_id
    assert poisoned.body == body
    assert poisoned.dequeue_count == MAX_DEQUEUE_COUNT
    assert poisoned.receipt == ""


def test_a_requeued_poison_message_works_again(queue: CommandQueue) -> None:
    body = {"command": "trigger", "n": 7}
    message_id = poison(queue, body)

    queue.requeue_poisoned(message_id)

    assert queue.poisoned() == []
    assert queue.depth() == 1
    message = receive_one(queue, MARGIN, visibility_timeout=30)
    assert message.body == body
    assert message.dequeue_count == 1
    queue.complete(message)
    assert queue.depth() == 0
    assert queue.poisoned() == []


def test_a_discarded_poison_message_is_gone(queue: CommandQueue) -> None:
    kept = poison(queue, {"keep": True})
    discarded = poison(queue, {"keep": False})
    assert [m.id for m in queue.poisoned()] == [kept, discarded]

    queue.discard_poisoned(discarded)

    assert [m.id for m in queue.poisoned()] == [kept]
    assert queue.poisoned(limit=1)[0].body == {"keep": True}
    assert queue.depth() == 0


def test_unknown_poison_ids(queue: CommandQueue) -> None:
    kept = poison(queue, {"keep": True})

    with pytest.raises(KeyError):
        queue.requeue_poisoned("no-such-message")
    queue.discard_poisoned("no-such-message")  # nothing to discard is not an error

    assert [m.id for m in queue.poisoned()] == [kept]


# --- crashes and concurrency ------------------------------------------------------------------------------


def test_nothing_is_lost_when_a_receiver_crashes(adapter: Adapter, queue: CommandQueue) -> None:
    sent = [queue.send({"n": n}) for n in range(3)]
    crashed = adapter.another_client()
    held = receive_within(crashed, MARGIN, max_messages=2, visibility_timeout=adapter.short_timeout)
    assert [m.id for m in held] == sent[:2]
    if crashed is not queue:
        close_client(crashed)  # gone without completing anything

    third = receive_one(queue, MARGIN, visibility_timeout=30)
    assert third.id == sent[2]
    back: list[Message] = []
    deadline = time.monotonic() + adapter.short_timeout + MARGIN
    while len(back) < 2 and time.monotonic() < deadline:
        back += queue.receive(max_messages=2, visibility_timeout=30)
        time.sleep(0.02)

    assert sorted(m.id for m in back) == sorted(sent[:2])
    assert all(m.dequeue_count == 2 for m in back)
    for message in [third, *back]:
        queue.complete(message)
    assert queue.depth() == 0


def test_concurrent_receivers_each_complete_a_message_exactly_once(queue: CommandQueue) -> None:
    sent = [queue.send({"n": n}) for n in range(200)]
    completed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def work() -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    if len(completed) == len(sent):
                        return
                for message in queue.receive(max_messages=8, visibility_timeout=30):
                    queue.complete(message)
                    with lock:
                        completed.append(message.id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(completed) == sorted(sent)
    assert queue.depth() == 0


def drain_in_process(spec: QueueSpec, start: Any, results: Any) -> None:
    """Run in a spawned process: receive and complete until the queue is empty; report the ids handled."""
    queue = open_queue(spec)
    handled: list[str] = []
    start.wait(30)  # a barrier: every worker is up before any receives, so they really do compete
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        received = queue.receive(max_messages=2, visibility_timeout=30)
        for message in received:
            time.sleep(0.001)  # the work, done outside the queue's lock as a real worker does
            queue.complete(message)
            handled.append(message.id)
        if not received and queue.depth() == 0:
            break
    close_client(queue)
    results.put(handled)


def hold_and_die(spec: QueueSpec, count: int, visibility_timeout: float, held: Any) -> None:
    """Run in a spawned process: receive `count` messages and exit abruptly without completing them."""
    queue = open_queue(spec)
    received = queue.receive(max_messages=count, visibility_timeout=visibility_timeout)
    held.put([m.id for m in received])
    held.close()
    held.join_thread()
    os._exit(1)


def test_two_processes_each_handle_a_message_exactly_once(adapter: Adapter, queue: CommandQueue) -> None:
    if not adapter.across_processes:
        pytest.skip(f"a {adapter.spec.kind} queue lives in one process")
    sent = [queue.send({"n": n}) for n in range(400)]
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=drain_in_process, args=(adapter.spec, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()

    handled = [results.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    everything = handled[0] + handled[1]
    assert sorted(everything) == sorted(sent), "a message was handled twice or not at all"
    assert all(handled), "one process handled everything: the test did not make them compete"
    assert queue.depth() == 0


def test_a_process_killed_while_holding_messages_loses_nothing(adapter: Adapter, queue: CommandQueue) -> None:
    if not adapter.across_processes:
        pytest.skip(f"a {adapter.spec.kind} queue lives in one process")
    sent = [queue.send({"n": n}) for n in range(5)]
    context = multiprocessing.get_context("spawn")
    held_ids = context.Queue()
    dying = context.Process(target=hold_and_die, args=(adapter.spec, 5, adapter.short_timeout, held_ids))
    dying.start()
    held = held_ids.get(timeout=60)
    dying.join(timeout=30)
    assert dying.exitcode == 1
    assert held == sent

    back: list[Message] = []
    deadline = time.monotonic() + adapter.short_timeout + MARGIN
    while len(back) < len(sent) and time.monotonic() < deadline:
        back += queue.receive(max_messages=5, visibility_timeout=30)
        time.sleep(0.02)

    assert [m.id for m in back] == sent
    assert all(m.dequeue_count == 2 for m in back)
    for message in back:
        queue.complete(message)
    assert queue.depth() == 0


# --- adapter specifics ------------------------------------------------------------------------------------


def test_memory_queue_follows_its_injected_clock() -> None:
    now = [100.0]
    queue = MemoryCommandQueue(max_dequeue_count=MAX_DEQUEUE_COUNT, clock=lambda: now[0])
    queue.send({"n": 1}, delay=10)
    assert queue.receive() == []

    now[0] += 10
    first = queue.receive(visibility_timeout=60)[0]
    now[0] += 59.9
    assert queue.receive() == []
    now[0] += 0.1
    assert queue.receive()[0].dequeue_count == first.dequeue_count + 1


def test_sqlite_delayed_messages_wait_apart_indexed_by_their_due_time(tmp_path: Path) -> None:
    now = [1000.0]
    queue = SqliteCommandQueue(tmp_path / "q.db", clock=lambda: now[0])
    try:
        assert queue.next_due_in() is None
        for n in range(300):
            queue.send({"n": n}, delay=60 + n)
        queue.send({"n": "soon"}, delay=5)
        ready = queue.send({"n": "ready"})
        assert queue.next_due_in() == 5
        for message in queue.receive(max_messages=10):
            assert message.id == ready
            queue.complete(message)
        plan = " ".join(str(row) for row in queue._db().execute(
            "EXPLAIN QUERY PLAN " + queue._sql_due, (now[0],)).fetchall())
        assert "commands_scheduled_not_before" in plan  # a receive probes the index; it scans no pending timer
        now[0] += 5
        assert queue.next_due_in() == 0
        assert [m.body for m in queue.receive(max_messages=10, visibility_timeout=3600)] == [{"n": "soon"}]
        now[0] += 60 + 299
        received = queue.receive(max_messages=1000, visibility_timeout=3600)
        received += queue.receive(max_messages=1000, visibility_timeout=3600)  # at most 256 join the queue at once
        assert [m.body["n"] for m in received] == list(range(300))
        assert queue.next_due_in() is None
    finally:
        queue.close()


def test_an_idle_sqlite_worker_sleeps_until_work_comes_or_the_earliest_timer_is_due(tmp_path: Path) -> None:
    queue = SqliteCommandQueue(tmp_path / "q.db")
    other = SqliteCommandQueue(tmp_path / "q.db")  # another queue object on the file: the same doorbell
    stop = threading.Event()
    try:
        queue.send({"n": "ready"})
        queue.wait_for_work(30)  # something is receivable: no sleep at all
        queue.complete(queue.receive()[0])

        def sleeper() -> threading.Thread:
            thread = threading.Thread(target=queue.wait_for_work, args=(30,), kwargs={"stop": stop})
            thread.start()
            return thread

        woken = sleeper()
        time.sleep(0.1)
        other.send({"n": "in this process"})  # rings the doorbell
        woken.join(10)
        assert not woken.is_alive()
        queue.complete(queue.receive()[0])

        woken = sleeper()
        time.sleep(0.1)
        with sqlite3.connect(tmp_path / "q.db") as outside:  # as another process writes: data_version changes
            outside.execute("INSERT INTO commands (id, body, enqueued_at, visible_at) VALUES ('x', '{}', 0, 0)")
        woken.join(10)
        assert not woken.is_alive()
        queue.complete(queue.receive()[0])

        sent_at = time.time()
        queue.send({"n": "timer"}, delay=0.5)
        queue.wait_for_work(30)  # sleeps until it is due, not 30 s
        assert time.time() >= sent_at + 0.5  # never woken before it is due …
        assert queue.receive()[0].body == {"n": "timer"}  # … and then it is there

        woken = sleeper()
        stop.set()
        woken.join(10)
        assert not woken.is_alive()
    finally:
        stop.set()
        queue.close()
        other.close()


def test_sqlite_failures_are_store_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.db"
    directory.mkdir()
    with pytest.raises(StoreUnavailable) as unopenable:
        SqliteCommandQueue(directory)
    assert unopenable.value.store == "command queue"
    assert isinstance(unopenable.value.__cause__, sqlite3.Error)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(StoreUnavailable):
        SqliteCommandQueue(garbage)

    queue = SqliteCommandQueue(tmp_path / "closed.db")
    queue.close()
    with pytest.raises(StoreUnavailable):
        queue.send({"n": 1})


# --- the Azure Storage adapter ----------------------------------------------------------------------------


@pytest.fixture
def azure_names(azurite: AzuriteServer) -> Iterator[tuple[str, QueueClient, QueueClient]]:
    """A fresh queue name, and plain SDK clients of it and of its poison queue (created)."""
    name = f"specific-{uuid.uuid4().hex[:16]}"
    raw = QueueClient.from_connection_string(azurite.connection_string, name)
    raw_poison = QueueClient.from_connection_string(azurite.connection_string, f"{name}-poison")
    raw.create_queue()
    raw_poison.create_queue()
    yield name, raw, raw_poison
    raw.close()
    raw_poison.close()


def azure_queue(azurite: AzuriteServer, name: str) -> AzureStorageCommandQueue:
    return AzureStorageCommandQueue.from_connection_string(
        azurite.connection_string, name, max_dequeue_count=MAX_DEQUEUE_COUNT
    )


def test_azure_messages_are_base64_json_as_a_functions_queue_trigger_reads_them(
    azurite: AzuriteServer, azure_names: tuple[str, QueueClient, QueueClient]
) -> None:
    name, raw, _ = azure_names
    body = {"command": "trigger", "topic": "sübmit", "content": {"amount": 12.5}}
    with azure_queue(azurite, name) as queue:
        queue.send(body)

        [peeked] = raw.peek_messages()
        assert base64.b64decode(peeked.content, validate=True).decode("utf-8") == json.dumps(
            body, ensure_ascii=False, separators=(",", ":")
        )
        decoding = QueueClient.from_connection_string(
            azurite.connection_string, name, message_decode_policy=TextBase64DecodePolicy()
        )
        with decoding:
            assert json.loads(decoding.peek_messages()[0].content) == body


def test_azure_reads_base64_and_plain_json_and_poisons_what_is_neither(
    azurite: AzuriteServer, azure_names: tuple[str, QueueClient, QueueClient]
) -> None:
    name, raw, _ = azure_names
    encoding = QueueClient.from_connection_string(
        azurite.connection_string, name, message_encode_policy=TextBase64EncodePolicy()
    )
    with encoding:
        encoding.send_message(json.dumps({"from": "an output binding"}))
    raw.send_message("this is neither base64 nor JSON")
    raw.send_message('{"from": "plain JSON"}')
    raw.send_message(base64.b64encode(b"[1, 2, 3]").decode())  # JSON, but not an object

    with azure_queue(azurite, name) as queue:
        received = receive_within(queue, MARGIN, max_messages=4)

        assert [m.body for m in received] == [{"from": "an output binding"}, {"from": "plain JSON"}]
        assert queue.depth() == 2
        undecodable = [m.body for m in queue.poisoned()]
        assert undecodable == [
            {"undecodable": "this is neither base64 nor JSON"},
            {"undecodable": base64.b64encode(b"[1, 2, 3]").decode()},
        ]


def test_azure_lists_and_requeues_what_the_functions_host_moved_to_the_poison_queue(
    azurite: AzuriteServer, azure_names: tuple[str, QueueClient, QueueClient]
) -> None:
    name, _, raw_poison = azure_names
    content = base64.b64encode(b'{"command":"trigger","n":1}').decode()
    moved = raw_poison.send_message(content)  # the host copies the message text verbatim, no envelope

    with azure_queue(azurite, name) as queue:
        [listed] = queue.poisoned()
        assert (listed.id, listed.body, listed.dequeue_count) == (moved.id, {"command": "trigger", "n": 1}, 3)

        queue.requeue_poisoned(moved.id)

        assert queue.poisoned() == []
        message = receive_one(queue, MARGIN)
        assert (message.body, message.dequeue_count) == ({"command": "trigger", "n": 1}, 1)
        queue.complete(message)


def test_azure_requeue_finds_a_poison_message_past_the_first_32(
    azurite: AzuriteServer, azure_names: tuple[str, QueueClient, QueueClient]
) -> None:
    name, _, raw_poison = azure_names
    for n in range(40):
        raw_poison.send_message(base64.b64encode(json.dumps({"n": n}).encode()).decode())
    last = raw_poison.send_message(base64.b64encode(b'{"n": "last"}').decode())

    with azure_queue(azurite, name) as queue:
        assert len(queue.poisoned()) == 32  # all Azure shows without taking them
        queue.requeue_poisoned(last.id)

        assert receive_one(queue, MARGIN).body == {"n": "last"}
        assert len(queue.poisoned(limit=100)) == 32  # the ones scanned past are visible again
        assert raw_poison.get_queue_properties().approximate_message_count == 40


def test_azure_refuses_a_body_larger_than_one_message(
    azurite: AzuriteServer, azure_names: tuple[str, QueueClient, QueueClient]
) -> None:
    name, _, _ = azure_names
    with azure_queue(azurite, name) as queue:
        queue.send({"text": "x" * (MAX_BODY_BYTES - 20)})  # fits
        with pytest.raises(MessageTooLarge) as refused:
            queue.send({"text": "x" * MAX_BODY_BYTES})
        assert refused.value.queue == name
        assert queue.depth() == 1
        assert receive_one(queue, MARGIN).body["text"] == "x" * (MAX_BODY_BYTES - 20)


def test_azure_refuses_bad_names_and_clients_that_encode_again(azurite: AzuriteServer) -> None:
    for bad in ["ab", "Upper", "double--hyphen", "-edge", "x" * 57]:
        with pytest.raises(ValueError):
            azure_queue(azurite, bad)
    encoding = QueueClient.from_connection_string(
        azurite.connection_string, "commands", message_encode_policy=TextBase64EncodePolicy()
    )
    with pytest.raises(ValueError, match="TextBase64EncodePolicy"):
        AzureStorageCommandQueue(encoding)


def test_azure_failures_are_store_unavailable(tmp_path: Path) -> None:
    """A stopped account: every call raises StoreUnavailable, quickly; after the restart the data is there."""
    with AzuriteServer(tmp_path, location=tmp_path / "data") as server:
        queue = AzureStorageCommandQueue.from_connection_string(
            server.connection_string, "commands", create_queues=True, max_dequeue_count=MAX_DEQUEUE_COUNT
        )
        with queue:
            message_id = queue.send({"n": 1})
            held = receive_one(queue, MARGIN, visibility_timeout=30)

            server.stop()
            started = time.monotonic()
            calls: list[Callable[[], object]] = [
                lambda: queue.send({"n": 2}),
                queue.receive,
                queue.depth,
                lambda: queue.complete(held),
                lambda: queue.release(held),
                queue.poisoned,
            ]
            for call in calls:
                with pytest.raises(StoreUnavailable) as unavailable:
                    call()
                assert unavailable.value.store == "command queue"
                assert isinstance(unavailable.value.__cause__, AzureError)
            assert time.monotonic() - started < 10 * len(calls)

            server.start()
            queue.release(held)
            again = receive_one(queue, MARGIN)
            assert (again.id, again.dequeue_count) == (message_id, 2)
            queue.complete(again)


def test_azure_fixture_fails_clearly_without_node_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(azure_fixtures, "NODE_BIN", tmp_path / "node_modules" / ".bin")
    with pytest.raises(azure_fixtures.AzuriteMissing, match="make test"):
        AzuriteServer(tmp_path)
