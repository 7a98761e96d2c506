"""The subscription store on SQLite: one file per tenant, `{data_dir}/feed/{tenant}.db` (WAL), apart from the
tenant's event file so that delivery bookkeeping never competes with appends for the event file's write lock."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.domain import StoreUnavailable
from engine.drivers.sqlite import DURABLE, Synchronous, checked_synchronous, durable, rollback
from engine.feed.subscriptions import Change, Subscription
from engine.tenants.sealing import Sealer

__all__ = ["SqliteSubscriptionStore"]

_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # as the SQLite event store's file names
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS deliveries (position INTEGER NOT NULL, name TEXT NOT NULL,"
    " PRIMARY KEY (position, name)) WITHOUT ROWID",
)


class SqliteSubscriptionStore:
    """One SQLite file per tenant under `{data_dir}/feed/`. One connection per tenant, used under a lock: the
    store is written only when a subscription's state changes or a delivery must be remembered, so it is never
    the bottleneck. `sqlite3` errors become `StoreUnavailable`."""

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0, sealer: Sealer | None = None,
                 synchronous: Synchronous = DURABLE) -> None:
        self.root = Path(data_dir) / "feed"
        self.synchronous = checked_synchronous(synchronous)
        self.busy_timeout = busy_timeout
        self.sealer = sealer  # seals the webhook secrets in the file (None: kept as they are)
        self._lock = threading.Lock()
        self._connections: dict[str, tuple[sqlite3.Connection, threading.Lock]] = {}

    def _connection(self, tenant: str) -> tuple[sqlite3.Connection, threading.Lock]:
        with self._lock:
            found = self._connections.get(tenant)
            if found is not None:
                return found
            if not _TENANT_PATTERN.match(tenant):
                raise ValueError(f"tenant id {tenant!r} cannot name a file")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.root / f"{tenant}.db", timeout=self.busy_timeout, isolation_level=None,
                                     check_same_thread=False)
                durable(db, self.synchronous)
                for statement in _SCHEMA:
                    db.execute(statement)
            except (sqlite3.Error, OSError) as e:
                raise StoreUnavailable("subscription store", f"tenant {tenant!r}: {e}") from e
            found = self._connections[tenant] = (db, threading.Lock())
            return found

    @contextlib.contextmanager
    def _transaction(self, tenant: str, *, write: bool) -> Any:
        db, lock = self._connection(tenant)
        with lock:
            try:
                if write:
                    db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    if write:
                        db.execute("COMMIT")
                except BaseException:
                    if write:
                        rollback(db)
                    raise
            except sqlite3.Error as e:
                raise StoreUnavailable("subscription store", f"tenant {tenant!r}: {e}") from e

    def get(self, tenant: str, name: str) -> Subscription | None:
        with self._transaction(tenant, write=False) as db:
            row = db.execute("SELECT doc FROM subscriptions WHERE name = ?", (name,)).fetchone()
        return None if row is None else Subscription.from_record(json.loads(row[0]), self.sealer)

    def list(self, tenant: str) -> list[Subscription]:
        with self._transaction(tenant, write=False) as db:
            rows = db.execute("SELECT doc FROM subscriptions ORDER BY name").fetchall()
        return [Subscription.from_record(json.loads(doc), self.sealer) for (doc,) in rows]

    def save(self, tenant: str, subscription: Subscription) -> None:
        with self._transaction(tenant, write=True) as db:
            db.execute("INSERT OR REPLACE INTO subscriptions (name, doc) VALUES (?, ?)",
                       (subscription.name, json.dumps(subscription.to_record(self.sealer))))

    def delete(self, tenant: str, name: str) -> bool:
        with self._transaction(tenant, write=True) as db:
            deleted = db.execute("DELETE FROM subscriptions WHERE name = ?", (name,)).rowcount
            db.execute("DELETE FROM deliveries WHERE name = ?", (name,))
        return bool(deleted)

    def modify(self, tenant: str, name: str, change: Change, *,
               default: Subscription | None = None) -> Subscription | None:
        with self._transaction(tenant, write=True) as db:
            row = db.execute("SELECT doc FROM subscriptions WHERE name = ?", (name,)).fetchone()
            current = Subscription.from_record(json.loads(row[0]), self.sealer) if row is not None else default
            if current is None:
                return None
            changed = change(current)
            db.execute("INSERT OR REPLACE INTO subscriptions (name, doc) VALUES (?, ?)",
                       (name, json.dumps(changed.to_record(self.sealer))))
        return changed

    def record_deliveries(self, tenant: str, position: int, names: Iterable[str]) -> None:
        rows = [(position, name) for name in names]
        if rows:
            with self._transaction(tenant, write=True) as db:
                db.executemany("INSERT OR IGNORE INTO deliveries (position, name) VALUES (?, ?)", rows)

    def deliveries(self, tenant: str, position: int) -> set[str]:
        with self._transaction(tenant, write=False) as db:
            return {name for (name,) in db.execute("SELECT name FROM deliveries WHERE position = ?", (position,))}

    def forget_deliveries(self, tenant: str, positions: Sequence[int]) -> None:
        if positions:
            with self._transaction(tenant, write=True) as db:
                db.executemany("DELETE FROM deliveries WHERE position = ?", [(p,) for p in positions])

    def close(self) -> None:
        with self._lock:
            for db, _ in self._connections.values():
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections.clear()
