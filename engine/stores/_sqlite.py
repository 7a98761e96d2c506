"""The tenant databases of the SQLite stores: one file per tenant, one connection per (tenant, thread).

A tenant's file `{data_dir}/tenants/{tenant}.db` holds its events, instances and definitions, so tenants are
siloed by the file system. Files are in WAL mode (readers never wait for the writer) with
`synchronous=NORMAL` (a commit survives a process crash; a power cut may lose the last few, never corrupt
the file). Writers take the write lock up front with `BEGIN IMMEDIATE` and wait up to the busy timeout for
it, which is what makes several threads and several processes appending to one tenant safe.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from pathlib import Path

from engine.domain.errors import StoreUnavailable, TenantNotFound

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

SCHEMA_VERSION = 1

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
    # The snapshot (a cache of the fold of the commits, rebuilt when missing or behind) and the listing index.
    """CREATE TABLE IF NOT EXISTS instances (
        id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        version INTEGER NOT NULL,
        interests TEXT NOT NULL,
        doc TEXT NOT NULL) WITHOUT ROWID""",
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


class TenantDatabases:
    """Opens, caches and closes the connections of one store to the tenant files under `data_dir`."""

    def __init__(self, data_dir: Path, *, store: str, busy_timeout: float = 10.0) -> None:
        self.directory = Path(data_dir) / "tenants"
        self.store = store
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False

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

    def unavailable(self, tenant: str, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(self.store, f"tenant {tenant!r} ({self.directory}): {type(error).__name__}: {error}")

    def close(self) -> None:
        """Close every connection of every thread. The store is not usable afterwards."""
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        for _, connection in opened:
            connection.close()

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
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            if connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for statement in SCHEMA:
                        connection.execute(statement)
                    connection.execute("COMMIT")
                except BaseException:
                    rollback(connection)
                    raise
        except sqlite3.Error as e:
            connection.close()
            raise self.unavailable(tenant, e) from e
        with self._lock:
            if self._closed:
                connection.close()
                raise StoreUnavailable(self.store, f"the store of {self.directory} is closed")
            self._opened.append((threading.current_thread(), connection))
        return connection


def rollback(connection: sqlite3.Connection) -> None:
    """Undo the open transaction, if any. A failing rollback must not hide the error that caused it."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
