"""Durable by default: every SQLite file a server acknowledges from is synced at each commit (synchronous=FULL),
and a received batch leaves the queue in one transaction that begins only after the transaction storing its
commits has returned (and so, at FULL, is on the disk). The writes that acknowledge nothing (a claim, a deletion
after the commit, an outbox mark) are not synced on their own. test_power_loss.py cuts the power to show what that
buys.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from engine.domain import Trigger
from engine.hosting.local import open_service
from engine.hosting.runtime import sqlite_engine
from engine.hosting.settings import Settings
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
LEVEL = {"full": 2, "normal": 1}  # what PRAGMA synchronous answers


def _synchronous(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA synchronous").fetchone()[0])


@pytest.mark.parametrize("setting", [None, "full", "normal"])
def test_every_sqlite_file_of_a_server_is_synced_at_each_commit_unless_relaxed(tmp_path: Path,
                                                                               setting: str | None) -> None:
    values = {} if setting is None else {"sqlite_synchronous": setting}
    service = open_service(Settings(data_dir=tmp_path, admin_key="a" * 32, **values))
    try:
        service.feed.subscribe("demo", "audit", endpoint="http://127.0.0.1:9/hook")
        sqlite_events, sqlite_definitions = service.engine.events.router._sqlite_stores()
        connections = {
            "tenant events": sqlite_events._db.connection("demo"),
            "tenant definitions": sqlite_definitions._db.connection("demo"),
            "command queue": service.engine.queue._db(),
            "tenant registry": service.tenants._db(),
            "subscriptions": service.feed.catalog.store._connection("demo")[0],
        }
        expected = LEVEL[setting or "full"]
        assert {name: _synchronous(c) for name, c in connections.items()} == dict.fromkeys(connections, expected)
        assert {name: c.execute("PRAGMA journal_mode").fetchone()[0] for name, c in connections.items()} == (
            dict.fromkeys(connections, "wal"))
    finally:
        service.close()


def test_the_synchronous_setting_refuses_anything_else(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        Settings(data_dir=tmp_path, sqlite_synchronous="off")
    with pytest.raises(ValueError, match="full, normal"):
        sqlite_engine(tmp_path, synchronous="off")


def test_a_batch_leaves_the_queue_in_one_transaction_after_the_one_that_stores_its_commits(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    instances = [f"claim-{n}" for n in range(4)]
    for instance_id in instances:
        engine.processor.create(CreateInstance(T, instance_id, "expense-claim", f"create-{instance_id}",
                                               context={"claimant": "ann"}))
    sent = [engine.queue.send(to_message(SendTrigger(T, instances[n % 4], Trigger("update", f"t-{n}", {"n": n}))))
            for n in range(16)]
    # Every statement either file runs on this thread (the worker's), in one order.
    trace: list[tuple[str, str]] = []
    store = engine.events._db.connection(T)
    queue = engine.queue._db()
    store.set_trace_callback(lambda sql: trace.append(("store", sql)))
    queue.set_trace_callback(lambda sql: trace.append(("queue", sql)))
    assert _synchronous(store) == _synchronous(queue) == LEVEL["full"]

    assert Worker(engine.queue, engine.processor, batch_size=16).run_once() == 16

    store.set_trace_callback(None)
    queue.set_trace_callback(None)
    writes = _transactions(trace)
    assert [(file, level, verbs.count("INSERT"), verbs.count("DELETE")) for file, level, verbs in writes] == [
        ("queue", "NORMAL", 0, 0),  # the receive: claims, not synced (a claim lost only delivers a message again)
        ("store", "FULL", 16, 0),  # the group commit of 16 commits (and their outbox rows): synced
        ("queue", "NORMAL", 0, 16),  # complete_many, after the store's COMMIT (and sync) returned
    ]
    # the probe for due delayed messages (timers), then the candidates, then the claims
    assert writes[0][2] == ["SELECT", "SELECT"] + ["UPDATE"] * 16
    assert _synchronous(store) == _synchronous(queue) == LEVEL["full"]  # set back after each unsynced write
    assert engine.queue.depth() == 0
    assert {c.trigger_id for i in instances for c in engine.events.read(T, i)} >= {f"t-{n}" for n in range(16)}
    assert len(sent) == 16


def test_a_batch_whose_commits_are_not_stored_stays_on_the_queue(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path, busy_timeout=0.05)
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance(T, "claim", "expense-claim", "create", context={"claimant": "ann"}))
    for n in range(8):
        engine.queue.send(to_message(SendTrigger(T, "claim", Trigger("update", f"t-{n}", {"n": n}))))
    blocker = sqlite3.connect(tmp_path / "tenants" / f"{T}.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the tenant's file cannot be written: the group commit fails
    try:
        assert Worker(engine.queue, engine.processor, batch_size=8).run_once() == 8
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert engine.queue.depth() == 8
    assert [e.trigger_id for e in engine.events.read(T, "claim")] == ["create"]


def _transactions(trace: list[tuple[str, str]]) -> list[tuple[str, str, list[str]]]:
    """The write transactions (BEGIN … COMMIT) in the trace, in the order they began: the file, the synchronous
    level its COMMIT ran at, and the verbs of its statements."""
    found: list[tuple[str, str, list[str]]] = []
    open_: dict[str, list[str]] = {}
    level = {"store": "FULL", "queue": "FULL"}
    for file, sql in trace:
        verb = sql.split()[0].upper()
        if sql.upper().startswith("PRAGMA SYNCHRONOUS ="):
            level[file] = sql.split("=")[1].strip().upper()
        elif verb == "BEGIN":
            open_[file] = []
        elif verb == "COMMIT":
            found.append((file, level[file], open_.pop(file)))
            # Each transaction ends before the next one (of either file) begins: none overlap.
            assert not open_, f"transactions overlap: {trace}"
        elif file in open_:
            open_[file].append(verb)
    assert not open_, f"a transaction was left open: {open_}"
    return found


def test_an_accepted_command_is_synced_before_send_returns(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path)
    queue = engine.queue._db()
    trace: list[str] = []
    queue.set_trace_callback(trace.append)

    engine.queue.send({"kind": "trigger"})

    queue.set_trace_callback(None)
    assert [sql.split()[0].upper() for sql in trace] == ["INSERT"]  # autocommit, at the connection's level
    assert _synchronous(queue) == LEVEL["full"]
