"""The embedded command queue: one SQLite file, shared by threads and processes.

Each thread has its own connection. A receive claims its messages inside `BEGIN IMMEDIATE` (the write lock
is taken before the read), so two receivers, in one process or in several, never claim the same visible
message. A claim only hides a message (`visible_at` moves forward) and gives it a new receipt; the row is
deleted by `complete` (or `complete_many`, one transaction for a worker's whole batch) alone, so a receiver that
dies loses nothing. Messages received more than `max_dequeue_count` times move to the `<name>_poison` table.

The file is synced like every SQLite file of Waymark (`synchronous=FULL` unless relaxed, see
engine/drivers/sqlite.py): a `send` that returned — the command acknowledged with 202 — is on the disk, and so
are a requeue or a discard. A claim, a completion and a release acknowledge nothing, and a power cut that loses one
only delivers a message again: they are written unsynced (`unsynced`) and synced by the next synced commit.

A message sent with a delay (a timer, a scheduled trigger, a retry put off) waits in `<name>_scheduled`, indexed
by its `not_before` time, and joins the queue when a receive finds it due. So ten thousand pending timers cost a
receive one index probe, not a scan past them.

An idle worker sleeps in `wait_for_work` until the earliest delayed message is due, or until work comes: a send or
release in this process rings a doorbell (at once); one in another process changes the file's `data_version`,
which the sleeper reads every `poll` seconds (a read of a counter: no transaction, no lock, unlike a receive).

Every `sqlite3` error is translated into `StoreUnavailable("command queue", ...)`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.domain.errors import StoreUnavailable
from engine.drivers.sqlite import DURABLE, Synchronous, checked_synchronous, durable, rollback, unsynced
from engine.queues.base import Message, MessageLost, check_receive, dump_body, load_body

_STORE = "command queue"
_PROMOTE_BATCH = 256  # due delayed messages moved onto the queue by one receive
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class Doorbell:
    """Rung when a message may have become receivable; shared by the queues of one file in this process."""

    def __init__(self) -> None:
        self._rung = 0
        self._condition = threading.Condition()

    def ticket(self) -> int:
        with self._condition:
            return self._rung

    def ring(self) -> None:
        with self._condition:
            self._rung += 1
            self._condition.notify_all()

    def wait(self, ticket: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a ring after `ticket` was taken; True when it rang."""
        with self._condition:
            return self._condition.wait_for(lambda: self._rung != ticket, timeout)


_DOORBELLS: dict[Path, Doorbell] = {}
_DOORBELLS_LOCK = threading.Lock()


def _doorbell(path: Path) -> Doorbell:
    with _DOORBELLS_LOCK:
        return _DOORBELLS.setdefault(path.resolve(), Doorbell())


class _SomeLost(Exception):
    """A batch's completion deleted fewer messages than it was given (a stale receipt among them)."""


class SqliteCommandQueue:
    embedded = True  # see engine.stores.base.embedded

    def __init__(
        self,
        path: Path,
        *,
        name: str = "commands",
        max_dequeue_count: int = 5,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = DURABLE,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"queue name {name!r} must be a letter or _ followed by letters, digits or _")
        if max_dequeue_count < 1:
            raise ValueError(f"max_dequeue_count must be at least 1, not {max_dequeue_count}")
        self.path = Path(path)
        self.doorbell = _doorbell(self.path)
        self.name = name
        self.max_dequeue_count = max_dequeue_count
        self.synchronous = checked_synchronous(synchronous)
        # Wall-clock time, not monotonic: visible_at is compared across processes.
        self._clock = clock
        self._local = threading.local()
        self._connections_lock = threading.Lock()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        self._poison_reason = f"exceeded max dequeue count {max_dequeue_count}"

        t, p, d = name, f"{name}_poison", f"{name}_scheduled"
        # seq (the rowid) is the enqueue order; FIFO is by seq, which no clock skew between processes can upset.
        self._schema = (
            f"CREATE TABLE IF NOT EXISTS {t} ("
            " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, enqueued_at REAL NOT NULL,"
            " visible_at REAL NOT NULL, dequeue_count INTEGER NOT NULL DEFAULT 0, receipt TEXT)",
            f"CREATE TABLE IF NOT EXISTS {p} ("
            " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, enqueued_at REAL NOT NULL,"
            " dequeue_count INTEGER NOT NULL, poisoned_at REAL NOT NULL, poison_reason TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {d} ("
            " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, enqueued_at REAL NOT NULL,"
            " not_before REAL NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {d}_not_before ON {d} (not_before)",
        )
        self._sql_schedule = f"INSERT INTO {d} (id, body, enqueued_at, not_before) VALUES (?, ?, ?, ?)"
        self._sql_due = (f"SELECT seq, id, body, enqueued_at, not_before FROM {d} WHERE not_before <= ?"
                         f" ORDER BY not_before LIMIT {_PROMOTE_BATCH}")
        self._sql_promote = f"INSERT INTO {t} (id, body, enqueued_at, visible_at) VALUES (?, ?, ?, ?)"
        self._sql_unschedule = f"DELETE FROM {d} WHERE seq = ?"
        self._sql_next_due = f"SELECT min(not_before) FROM {d}"
        self._sql_ready = f"SELECT 1 FROM {t} WHERE visible_at <= ? LIMIT 1"
        # The held messages (received, or released with a delay) come back when their visibility ends.
        self._sql_next_visible = f"SELECT min(visible_at) FROM {t} WHERE visible_at > ?"
        self._sql_scheduled_depth = f"SELECT count(*) FROM {d}"
        self._sql_send = f"INSERT INTO {t} (id, body, enqueued_at, visible_at) VALUES (?, ?, ?, ?)"
        # Scans in enqueue order and skips the few held or delayed messages, rather than sorting every visible
        # one: cheap even with a deep backlog.
        self._sql_candidates = (
            f"SELECT seq, id, body, dequeue_count FROM {t} WHERE visible_at <= ? ORDER BY seq LIMIT ?"
        )
        self._sql_claim = f"UPDATE {t} SET visible_at = ?, dequeue_count = ?, receipt = ? WHERE seq = ?"
        self._sql_poison = (
            f"INSERT OR REPLACE INTO {p} (id, body, enqueued_at, dequeue_count, poisoned_at, poison_reason)"
            f" SELECT id, body, enqueued_at, dequeue_count, ?, ? FROM {t} WHERE seq = ?"
        )
        self._sql_delete_seq = f"DELETE FROM {t} WHERE seq = ?"
        self._sql_complete = f"DELETE FROM {t} WHERE id = ? AND receipt = ?"
        self._sql_release = f"UPDATE {t} SET visible_at = ?, receipt = NULL WHERE id = ? AND receipt = ?"
        self._sql_depth = f"SELECT count(*) FROM {t}"
        self._sql_poisoned = f"SELECT id, body, dequeue_count FROM {p} ORDER BY poisoned_at, seq LIMIT ?"
        self._sql_take_poisoned = f"SELECT id, body FROM {p} WHERE id = ?"
        self._sql_delete_poisoned = f"DELETE FROM {p} WHERE id = ?"

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable(_STORE, f"cannot create the directory of {self.path}: {e}") from e
        with self._translated(), self._transaction() as db:
            for statement in self._schema:
                db.execute(statement)

    def send(self, body: Mapping[str, Any], *, delay: float = 0.0) -> str:
        text = dump_body(body)
        message_id = uuid.uuid4().hex
        now = self._clock()
        with self._translated():
            # Autocommit: one INSERT is one transaction, synced before it returns (synchronous=FULL).
            if delay > 0:
                self._db().execute(self._sql_schedule, (message_id, text, now, now + delay))
            else:
                self._db().execute(self._sql_send, (message_id, text, now, now))
        self.doorbell.ring()  # a delayed one too: a sleeping worker reckons its earliest due time again
        return message_id

    def receive(self, *, max_messages: int = 1, visibility_timeout: float = 30.0) -> list[Message]:
        check_receive(max_messages, visibility_timeout)
        received: list[Message] = []
        # A claim's receipt: this receive's own random token and the row's seq, unique to the claim.
        token = uuid.uuid4().hex
        with self._translated(), self._transaction(synced=False) as db:
            now = self._clock()
            for seq, message_id, body, enqueued_at, not_before in db.execute(self._sql_due, (now,)).fetchall():
                db.execute(self._sql_unschedule, (seq,))
                db.execute(self._sql_promote, (message_id, body, enqueued_at, not_before))
            while len(received) < max_messages:
                candidates = db.execute(self._sql_candidates, (now, max_messages - len(received))).fetchall()
                if not candidates:
                    break
                claims = []
                for seq, message_id, body, dequeue_count in candidates:
                    if dequeue_count >= self.max_dequeue_count:
                        db.execute(self._sql_poison, (now, self._poison_reason, seq))
                        db.execute(self._sql_delete_seq, (seq,))
                        continue
                    receipt = f"{token}-{seq}"
                    claims.append((now + visibility_timeout, dequeue_count + 1, receipt, seq))
                    received.append(Message(message_id, load_body(body), dequeue_count + 1, receipt))
                db.executemany(self._sql_claim, claims)  # one statement a claim, in one call
                if now + visibility_timeout <= now:
                    break  # claimed rows are still visible: querying again would hand them out twice
        return received

    def complete(self, message: Message) -> None:
        with self._translated(), unsynced(self._db(), self.synchronous):
            deleted = self._db().execute(self._sql_complete, (message.id, message.receipt)).rowcount
        if deleted != 1:
            raise MessageLost(f"message {message.id!r} is no longer held by this receiver")

    def complete_many(self, messages: Sequence[Message]) -> list[Message]:
        """Delete every message of a processed batch in one transaction (one sync of the file, not one each)."""
        if not messages:
            return []
        try:
            with self._translated(), self._transaction(synced=False) as db:
                if db.executemany(self._sql_complete, [(m.id, m.receipt) for m in messages]).rowcount != len(messages):
                    raise _SomeLost  # rolled back: done again one by one, to tell which
            return []
        except _SomeLost:
            pass
        with self._translated(), self._transaction(synced=False) as db:
            return [message for message in messages
                    if db.execute(self._sql_complete, (message.id, message.receipt)).rowcount != 1]

    def release(self, message: Message, *, delay: float = 0.0) -> None:
        # The receipt is cleared, as Azure changes the pop receipt on update: the receiver has let go.
        with self._translated(), unsynced(self._db(), self.synchronous):
            updated = (
                self._db()
                .execute(self._sql_release, (self._clock() + max(delay, 0.0), message.id, message.receipt))
                .rowcount
            )
        if updated != 1:
            raise MessageLost(f"message {message.id!r} is no longer held by this receiver")
        self.doorbell.ring()

    def wait_for_work(self, timeout: float, *, stop: threading.Event | None = None, poll: float = 0.05) -> None:
        """Sleep up to `timeout` seconds, and no longer than until the earliest delayed message is due; return early
        when a message is sent or released in this process, when another process writes to the queue's file, or
        when `stop` is set (checked every `poll` seconds)."""
        ticket = self.doorbell.ticket()
        with self._translated():
            db = self._db()
            version = db.execute("PRAGMA data_version").fetchone()[0]
            now = self._clock()
            if db.execute(self._sql_ready, (now,)).fetchone() is not None:
                return  # sent before the ticket was taken: there is work now
            times = [row[0] for row in (db.execute(self._sql_next_due).fetchone(),
                                        db.execute(self._sql_next_visible, (now,)).fetchone()) if row[0] is not None]
        if times:
            timeout = min(timeout, max(0.0, min(times) - now))
        deadline = time.monotonic() + timeout
        while not (stop is not None and stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.doorbell.wait(ticket, min(poll, remaining)):
                return
            with self._translated():
                if self._db().execute("PRAGMA data_version").fetchone()[0] != version:
                    return

    def depth(self) -> int:
        with self._translated():
            (count,) = self._db().execute(self._sql_depth).fetchone()
            (scheduled,) = self._db().execute(self._sql_scheduled_depth).fetchone()
        return int(count) + int(scheduled)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest delayed message is due (0 when one is due now), None when none waits."""
        with self._translated():
            (due,) = self._db().execute(self._sql_next_due).fetchone()
        return None if due is None else max(0.0, float(due) - self._clock())

    def poisoned(self, *, limit: int = 100) -> list[Message]:
        with self._translated():
            rows = self._db().execute(self._sql_poisoned, (limit,)).fetchall()
        return [Message(message_id, json.loads(body), count, "") for message_id, body, count in rows]

    def requeue_poisoned(self, message_id: str) -> None:
        with self._translated(), self._transaction() as db:
            row = db.execute(self._sql_take_poisoned, (message_id,)).fetchone()
            if row is None:
                raise KeyError(f"no poisoned message {message_id!r} in queue {self.name!r}")
            now = self._clock()
            db.execute(self._sql_delete_poisoned, (message_id,))
            db.execute(self._sql_send, (message_id, row[1], now, now))
        self.doorbell.ring()

    def discard_poisoned(self, message_id: str) -> None:
        with self._translated():
            self._db().execute(self._sql_delete_poisoned, (message_id,))

    def close(self) -> None:
        """Close every thread's connection. The queue cannot be used afterwards."""
        with self._connections_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _, connection in connections:
            connection.close()

    def __enter__(self) -> SqliteCommandQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._connections_lock:
            if self._closed:
                raise StoreUnavailable(_STORE, f"queue {self.name!r} at {self.path} is closed")
            # Connections of threads that have ended would otherwise stay open until close().
            for thread, stale in [entry for entry in self._connections if not entry[0].is_alive()]:
                stale.close()
                self._connections.remove((thread, stale))
            # isolation_level=None: autocommit, transactions only where we BEGIN them.
            # check_same_thread=False only so close() may close them from another thread.
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            try:
                connection.execute("PRAGMA busy_timeout = 10000")
                durable(connection, self.synchronous)
            except BaseException:
                connection.close()
                raise
            self._connections.append((threading.current_thread(), connection))
        self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; `synced=False` for one that only moves messages along their at-least-once life
        (a claim, a deletion after the commits, a retry): see engine.drivers.sqlite.unsynced."""
        db = self._db()
        with contextlib.ExitStack() as stack:
            if not synced:
                stack.enter_context(unsynced(db, self.synchronous))
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                rollback(db)  # a failing rollback must not hide the error that caused it
                raise

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise StoreUnavailable(_STORE, f"queue {self.name!r} at {self.path}: {e}") from e


