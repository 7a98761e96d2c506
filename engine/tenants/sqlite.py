"""The tenant registry in one SQLite file (`{data_dir}/tenants.db`): what `waymark serve` keeps its tenants in."""

from __future__ import annotations

import contextlib
import hmac
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.domain.errors import StoreUnavailable, TenantNotFound
from engine.domain.events import timestamp
from engine.drivers.sqlite import DURABLE, Synchronous, checked_synchronous, durable, rollback
from engine.tenants.base import (
    Defaults,
    TenantAlreadyExists,
    TenantRecord,
    check_tenant_id,
    keep_config_secrets,
    new_config,
)
from engine.tenants.keys import ConfigSealing, KeyHasher, new_key

__all__ = ["SqliteTenantRegistry"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        config TEXT NOT NULL) WITHOUT ROWID""",
)


class SqliteTenantRegistry(ConfigSealing):
    """The registry in one SQLite file (`{data_dir}/tenants.db`, WAL). Safe to share between threads. The secrets
    of a tenant's configuration are sealed in the file (SECRET_CONFIG_KEYS)."""

    embedded = True  # see engine.stores.base.embedded

    def __init__(self, path: Path, *, secret: str | bytes, busy_timeout: float = 10.0,
                 defaults: Defaults | None = None, synchronous: Synchronous = DURABLE) -> None:
        self.path = Path(path)
        self.synchronous = checked_synchronous(synchronous)
        self.hasher = KeyHasher(secret)
        self.defaults = defaults
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._closed = False
        with self._translated():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise

    def create(self, tenant_id: str, *, key: str | None = None,
               config: Mapping[str, Any] | None = None) -> tuple[TenantRecord, str]:
        check_tenant_id(tenant_id)
        key = key or new_key()
        record = TenantRecord(tenant_id, self.hasher.hash(key), timestamp(datetime.now(UTC)),
                              new_config(tenant_id, config, self.defaults))
        with self._translated():
            try:
                self._db().execute("INSERT INTO tenants (id, key_hash, created_at, config) VALUES (?, ?, ?, ?)",
                                   (record.id, record.key_hash, record.created_at,
                                    json.dumps(self._sealed_config(record.config))))
            except sqlite3.IntegrityError as e:
                if "key_hash" in str(e):  # two tenants given the same key: refuse, as a key names one tenant
                    raise ValueError("this key is already the key of another tenant") from e
                raise TenantAlreadyExists(tenant_id) from e
        return record, key

    def get(self, tenant_id: str) -> TenantRecord:
        with self._translated():
            row = self._db().execute("SELECT id, key_hash, created_at, config FROM tenants WHERE id = ?",
                                     (tenant_id,)).fetchone()
        if row is None:
            raise TenantNotFound(tenant_id)
        return self._record(row)

    def authenticate(self, key: str) -> TenantRecord | None:
        wanted = self.hasher.hash(key)
        with self._translated():
            row = self._db().execute("SELECT id, key_hash, created_at, config FROM tenants WHERE key_hash = ?",
                                     (wanted,)).fetchone()
        if row is None or not hmac.compare_digest(row[1], wanted):
            return None
        return self._record(row)

    def rotate_key(self, tenant_id: str, *, key: str | None = None) -> str:
        key = key or new_key()
        with self._translated():
            updated = self._db().execute("UPDATE tenants SET key_hash = ? WHERE id = ?",
                                         (self.hasher.hash(key), tenant_id)).rowcount
        if updated != 1:
            raise TenantNotFound(tenant_id)
        return key

    def update_config(self, tenant_id: str, config: Mapping[str, Any]) -> TenantRecord:
        stored = json.dumps(self._sealed_config(keep_config_secrets(config, self.get(tenant_id).config)))
        with self._translated():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                updated = db.execute("UPDATE tenants SET config = ? WHERE id = ?", (stored, tenant_id)).rowcount
                row = db.execute("SELECT id, key_hash, created_at, config FROM tenants WHERE id = ?",
                                 (tenant_id,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        if updated != 1 or row is None:
            raise TenantNotFound(tenant_id)
        return self._record(row)

    def list(self) -> list[TenantRecord]:
        with self._translated():
            rows = self._db().execute("SELECT id, key_hash, created_at, config FROM tenants ORDER BY id").fetchall()
        return [self._record(row) for row in rows]

    def ping(self) -> None:
        with self._translated():
            self._db().execute("SELECT count(*) FROM tenants").fetchone()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()

    def _db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        with self._lock:
            if self._closed:
                raise StoreUnavailable("tenant registry", f"{self.path} is closed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        try:
            durable(connection, self.synchronous)  # a tenant answered 201 (its key shown once) is on the disk
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._opened.append(connection)
        self._local.connection = connection
        return connection

    def _record(self, row: tuple[Any, ...]) -> TenantRecord:
        return TenantRecord(row[0], row[1], row[2], self._opened_config(json.loads(row[3])))

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable("tenant registry", f"{self.path}: {type(e).__name__}: {e}") from e
