"""The tenant databases of the SQLite stores: one file per tenant, one connection per (tenant, thread).

A tenant's file `{data_dir}/tenants/{tenant}.db` holds its events, instances and definitions, so tenants are
siloed by the file system. Files are in WAL mode (readers never wait for the writer) with `synchronous=FULL` by
default (see `durable`): a commit that returned is on the disk. Writers take the write lock up front with
`BEGIN IMMEDIATE` and wait up to the busy timeout for it, which is what makes several threads and several
processes appending to one tenant safe.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, get_args

from engine.domain.errors import StoreUnavailable, TenantNotFound

# How every SQLite file of Waymark is synced (WAYMARK_SQLITE_SYNCHRONOUS). In WAL mode, FULL syncs the WAL at
# every commit, before COMMIT returns: an acknowledged command survives an OS crash or a power cut. NORMAL syncs
# only at checkpoints: a process crash loses nothing, but a power cut may lose the last commits of each file —
# and the files are synced apart, so it may keep a queue's DELETE and lose the commit it followed.
Synchronous = Literal["full", "normal"]
SYNCHRONOUS_LEVELS: tuple[Synchronous, ...] = get_args(Synchronous)
DURABLE: Synchronous = "full"


def checked_synchronous(synchronous: str) -> Synchronous:
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}")
    return synchronous


def durable(connection: sqlite3.Connection, synchronous: Synchronous = DURABLE) -> None:
    """WAL mode and the synchronous level of a new connection (a connection's level is its own: every connection
    of a file must be set)."""
    synchronous = checked_synchronous(synchronous)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")


@contextlib.contextmanager
def unsynced(connection: sqlite3.Connection, synchronous: Synchronous) -> Iterator[None]:
    """Run the transactions of the block at NORMAL on a FULL connection, and set FULL again after.

    Only for a write that acknowledges nothing and whose loss is already tolerated — a queue message's claim, its
    deletion once its commits are stored, an outbox mark: lost to a power cut, the message is delivered again and
    its trigger found recorded, or the commit published again. The write is synced by the next synced commit of the
    file (the WAL is appended to in order and synced whole) or by a checkpoint, and it is made only after whatever
    it follows was synced: it can reach the disk before that only if its own sync did, which it never waits for.
    tests/reliability/test_power_loss.py cuts the power at every sync to check it."""
    if synchronous != "full":
        yield
        return
    connection.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        connection.execute("PRAGMA synchronous = FULL")


TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

SCHEMA_VERSION = 2
PAGE_SIZE = 2048
CACHE_KIB = 8192  # page cache of each connection
CHECKPOINT_EVERY = 64  # commits between background checkpoints
CHECKPOINT_IDLE_SECONDS = 1.0  # ... or this long after the last commit
BACKSTOP_CHECKPOINT_PAGES = 8192  # the WAL size (16 MiB) at which a writer checkpoints itself

# Commits hold their events (JSON) and the instance after them (JSON); there is no separate events table, so
# an event is written once. `commits_sequence` is the backstop of the gapless guarantee: no two commits of an
# instance start at the same sequence. A position is the rowid: commits are never deleted, so
# positions are never reused (AUTOINCREMENT would cost one more page written per commit).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS commits (
        position INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL,
        first_sequence INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL,
        trigger_id TEXT,
        committed_at TEXT NOT NULL,
        dispatched INTEGER NOT NULL DEFAULT 0,
        events TEXT NOT NULL,
        state TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS commits_sequence ON commits (instance_id, first_sequence)",
    "CREATE UNIQUE INDEX IF NOT EXISTS commits_trigger ON commits (instance_id, trigger_id)"
    " WHERE trigger_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS commits_undispatched ON commits (position) WHERE dispatched = 0",
    # The listing index: the columns an instance is listed by (the instance itself is its last commit's state).
    """CREATE TABLE IF NOT EXISTS instances (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        interests TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS instances_status ON instances (status, id)",
    "CREATE INDEX IF NOT EXISTS instances_workflow ON instances (workflow_id, id)",
    "CREATE INDEX IF NOT EXISTS instances_state ON instances (state, id)",
    """CREATE TABLE IF NOT EXISTS interests (
        subject TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        PRIMARY KEY (subject, instance_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS interests_instance ON interests (instance_id)",
    """CREATE TABLE IF NOT EXISTS definitions (
        workflow_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        document TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (workflow_id, version)) WITHOUT ROWID""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# What brings a file of an older schema version to the next one, run before SCHEMA in the same transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 → 2: the instance row kept a copy of the last commit's state, rewritten on every commit.
    1: ("ALTER TABLE instances DROP COLUMN doc", "ALTER TABLE instances DROP COLUMN version"),
}


class TenantDatabases:
    """Opens, caches and closes the connections of one store to the tenant files under `data_dir`.

    With `background_checkpoints`, a daemon thread copies the WAL back into the database (a PASSIVE
    checkpoint, which never blocks a writer) after every few commits, as the SQLite documentation suggests for
    busy writers: the checkpoint's fsyncs then no longer stall the thread that commits. The writers keep a
    far larger automatic checkpoint as the backstop that restarts the WAL, which their PASSIVE checkpoints
    cannot do while commits keep arriving.
    """

    def __init__(self, data_dir: Path, *, store: str, busy_timeout: float = 10.0,
                 background_checkpoints: bool = False, synchronous: Synchronous = DURABLE) -> None:
        self.directory = Path(data_dir) / "tenants"
        self.store = store
        self.busy_timeout = busy_timeout
        self.synchronous = checked_synchronous(synchronous)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        self._background = background_checkpoints
        self._checkpointer: threading.Thread | None = None
        self._wake = threading.Event()
        self._written: set[str] = set()  # tenants committed to since the last checkpoint
        self._commits = 0
        # A connection must not cross a fork: a child process opens its own.
        forget = weakref.WeakMethod(self._forget_after_fork)
        os.register_at_fork(after_in_child=lambda: (method := forget()) and method())

    def path(self, tenant: str) -> Path:
        if not TENANT_PATTERN.match(tenant):
            # The id becomes a file name: nothing but a plain name may reach the file system.
            raise TenantNotFound(tenant)
        return self.directory / f"{tenant}.db"

    def connection(self, tenant: str) -> sqlite3.Connection:
        """This thread's connection to the tenant's file, opened (and the schema created) on first use."""
        try:
            connection: sqlite3.Connection = self._local.connections[tenant]
            return connection
        except AttributeError:
            self._local.connections = {}
        except KeyError:
            pass
        opened = self._open(tenant)
        self._local.connections[tenant] = opened
        return opened

    def committed(self, tenant: str) -> None:
        """Note a commit to the tenant's file (for the background checkpoints)."""
        if not self._background:
            return
        with self._lock:
            self._written.add(tenant)
            self._commits += 1
            if self._commits < CHECKPOINT_EVERY:
                return
            self._commits = 0
            if self._checkpointer is None and not self._closed:
                self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                      name=f"{self.store} checkpoints")
                self._checkpointer.start()
        self._wake.set()

    def unavailable(self, tenant: str, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self.store, f"tenant {tenant!r} ({self.directory}): {type(error).__name__}: {error}")

    def close(self) -> None:
        """Close every connection of every thread. The store is not usable afterwards."""
        with self._lock:
            self._closed = True
            checkpointer = self._checkpointer
        self._wake.set()
        if checkpointer is not None:
            checkpointer.join()
        with self._lock:
            opened, self._opened = self._opened, []
        for _, connection in opened:
            connection.close()

    def _forget_after_fork(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened = []  # the parent's: left alone, never closed from here
        self._checkpointer = None
        self._wake = threading.Event()

    def _checkpoint_loop(self) -> None:
        while True:
            self._wake.wait(CHECKPOINT_IDLE_SECONDS)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                written, self._written = self._written, set()
            for tenant in written:
                # Another checkpoint running, or the file unreachable: the writers' backstop remains.
                with contextlib.suppress(sqlite3.Error, StoreUnavailable):
                    self.connection(tenant).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _open(self, tenant: str) -> sqlite3.Connection:
        path = self.path(tenant)
        with self._lock:
            if self._closed:
                raise StoreUnavailable(self.store, f"the store of {self.directory} is closed")
            # Connections of threads that have ended would otherwise stay open until close().
            for entry in [entry for entry in self._opened if not entry[0].is_alive()]:
                entry[1].close()
                self._opened.remove(entry)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False only so close() may close every thread's connection; each is used by the
            # thread that opened it alone. isolation_level=None: transactions are begun explicitly.
            connection = sqlite3.connect(path, timeout=self.busy_timeout, isolation_level=None,
                                         check_same_thread=False, cached_statements=64)
        except (OSError, sqlite3.Error) as e:
            raise self.unavailable(tenant, e) from e
        try:
            self._set_up(connection)
        except sqlite3.Error as e:
            connection.close()
            raise self.unavailable(tenant, e) from e
        with self._lock:
            if self._closed:
                connection.close()
                raise StoreUnavailable(self.store, f"the store of {self.directory} is closed")
            self._opened.append((threading.current_thread(), connection))
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        """Pragmas and schema, retried while the file is locked: switching a new file to WAL takes an exclusive
        lock without waiting on the busy handler, so connections opened at once (threads or processes) race."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                with _SETUP_LOCK:  # no race between this process's own threads
                    self._pragmas_and_schema(connection)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _pragmas_and_schema(self, connection: sqlite3.Connection) -> None:
        # Set before the file's first write, ignored after. Every page a commit touches is written whole to
        # the WAL and again by the checkpoint: 2 KiB pages write about a third less than 4 KiB ones.
        connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        durable(connection, self.synchronous)
        connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if self._background:
            connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}")
            connection.execute(f"PRAGMA journal_size_limit = {BACKSTOP_CHECKPOINT_PAGES * PAGE_SIZE}")
        if connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Read again under the write lock: another connection may have brought the file up meanwhile.
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):  # a new file needs no migration
                        for statement in MIGRATIONS[step]:
                            connection.execute(statement)
                    for statement in SCHEMA:
                        connection.execute(statement)
                connection.execute("COMMIT")
            except BaseException:
                rollback(connection)
                raise


_SETUP_LOCK = threading.Lock()


def rollback(connection: sqlite3.Connection) -> None:
    """Undo the open transaction, if any. A failing rollback must not hide the error that caused it."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
