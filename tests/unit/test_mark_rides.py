"""Outbox marks ride along the next append's transaction on the SQLite event store (engine/stores/_rides.py), and
are written alone when no append comes in time or the ride fails."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from engine.domain import Trigger
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import CreateInstance
from engine.service.engine import Engine
from engine.stores._rides import MarkRides
from engine.stores.sqlite import SqliteEventStore

ROOT = Path(__file__).resolve().parents[2]
T = "acme"


def _engine(tmp_path: Path, instances: int = 2) -> tuple[Engine, SqliteEventStore, list[int]]:
    engine = sqlite_engine(tmp_path)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    positions = [engine.processor.create(CreateInstance(T, f"c{n}", "expense-claim", f"create-{n}",
                                                        context={"claimant": "ann"})).commit.position or 0
                 for n in range(instances)]
    assert isinstance(engine.events, SqliteEventStore)
    return engine, engine.events, positions


def _undispatched(store: SqliteEventStore) -> list[int]:
    return [c.position or 0 for c in store.undispatched(T, limit=100)]


def test_marks_offered_while_a_worker_appends_are_written_in_its_transaction(tmp_path: Path) -> None:
    engine, store, positions = _engine(tmp_path)
    store.rides.wait = 5.0  # the append below comes long before this
    marker = threading.Thread(target=store.mark_dispatched, args=(T, positions))
    marker.start()
    deadline = time.monotonic() + 5
    while not store.rides._waiting.get(T) and time.monotonic() < deadline:
        time.sleep(0.001)
    trace: list[str] = []
    connection = store._db.connection(T)
    connection.set_trace_callback(trace.append)
    engine.processor.trigger(T, "c0", Trigger("update", "u", {"amount": 1.5}))
    connection.set_trace_callback(None)
    marker.join(5)
    assert not marker.is_alive()
    verbs = [sql.split()[0] for sql in trace if sql.split()[0] in ("BEGIN", "INSERT", "UPDATE", "COMMIT")]
    assert verbs[0] == "BEGIN" and verbs[-1] == "COMMIT" and verbs.count("BEGIN") == 1
    assert verbs.count("UPDATE") == len(positions)  # the marks, inside the append's one transaction
    assert (store.rides.ridden, store.rides.alone) == (1, 0)
    assert _undispatched(store) == [positions[-1] + 1]  # only the new commit (nobody marks it here)


def test_marks_are_written_alone_at_once_when_no_append_was_made_lately(tmp_path: Path) -> None:
    _, store, positions = _engine(tmp_path)
    time.sleep(store.rides.wait * 2)
    start = time.monotonic()
    store.mark_dispatched(T, positions)
    assert time.monotonic() - start < 5  # (no ride was waited for; nothing here asserts a speed)
    assert (store.rides.ridden, store.rides.alone) == (0, 1)
    assert _undispatched(store) == []


def test_marks_no_append_took_are_withdrawn_and_written_alone(tmp_path: Path) -> None:
    _, store, positions = _engine(tmp_path)
    store.rides.take(T)  # as if an append had just been made
    store.mark_dispatched(T, positions)
    assert (store.rides.ridden, store.rides.alone) == (0, 1)
    assert not store.rides._waiting.get(T)  # withdrawn (or, on a slow machine, never offered)
    assert _undispatched(store) == []


def test_a_ride_whose_append_failed_is_written_by_its_caller() -> None:
    rides = MarkRides(wait=5.0)
    rides.take(T)
    answer: list[bool] = []
    offer = threading.Thread(target=lambda: answer.append(rides.offer(T, [1, 2], patience=5.0)))
    offer.start()
    deadline = time.monotonic() + 5
    while not rides._waiting.get(T) and time.monotonic() < deadline:
        time.sleep(0.001)
    taken = rides.take(T)
    assert [ride.positions for ride in taken] == [[1, 2]]
    rides.finished(taken, written=False)  # the append's transaction was rolled back
    offer.join(5)
    assert answer == [False] and rides.ridden == 0


def test_a_ride_committed_with_its_append_is_done() -> None:
    rides = MarkRides(wait=5.0)
    rides.take(T)
    answer: list[bool] = []
    offer = threading.Thread(target=lambda: answer.append(rides.offer(T, [7], patience=5.0)))
    offer.start()
    deadline = time.monotonic() + 5
    while not rides._waiting.get(T) and time.monotonic() < deadline:
        time.sleep(0.001)
    rides.finished(rides.take(T), written=True)
    offer.join(5)
    assert answer == [True] and rides.ridden == 1
