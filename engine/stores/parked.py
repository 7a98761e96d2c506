"""Parked commands: what the engine can never process as it is, kept per tenant until an operator decides.

A command is *parked* — taken off the command queue and kept, whole, in its tenant's own durable store — when
retrying cannot help: it is malformed (an unknown kind, a missing field: version skew during a deployment), it
creates an instance that exists, it failed on every delivery the queue allows (a bug, an instance that never came
to exist), or it was held through an outage longer than the hold allows. An outage itself never parks anything:
it is held on the queue (engine/service/holding.py). Each record keeps the body, the reason, the delivery count
and the first and last failure, and is listed with paging and filters, replayed ("requeued") or discarded one by
one, by filter or all (engine/service/parked.py).

Where: the SQLite store keeps a table `parked` in the tenant's own file (`{data_dir}/tenants/{tenant}.db`); the
Cosmos store a container `parked` in the tenant's database (engine/stores/parked_cosmos.py); the memory store is
for tests. Every adapter passes tests/contract/test_parked_store.py.

Listing is ordered by `parkedAt`, then id (the order they were parked in); the continuation token is the last
item's `{parkedAt}|{id}`, so pages stay stable while records are added or removed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from engine.domain import NotFound, timestamp
from engine.drivers.sqlite import DURABLE, Synchronous, TenantDatabases, rollback

__all__ = ["REASONS", "MemoryParkedStore", "ParkedCommand", "ParkedNotFound", "ParkedPage", "ParkedQuery",
           "ParkedStore", "SqliteParkedStore", "continuation_of", "moment", "sort_key"]

# Why a command is parked (the `reason` filter).
REASONS = ("malformed", "instance-exists", "failed", "hold-expired", "poisoned")
MAX_PAGE = 1000


class ParkedNotFound(NotFound):
    def __init__(self, tenant: str, parked_id: str) -> None:
        self.tenant = tenant
        self.parked_id = parked_id
        super().__init__(f"no parked command {parked_id!r} in tenant {tenant!r}")


@dataclass(frozen=True, slots=True)
class ParkedCommand:
    id: str
    body: Mapping[str, Any]  # the command message, as it was on the queue
    reason: str  # one of REASONS
    detail: str  # what went wrong, for the operator
    delivery_count: int
    first_failure_at: str  # RFC 3339, UTC
    last_failure_at: str
    parked_at: str
    error_type: str | None = None

    @property
    def instance_id(self) -> str | None:
        value = self.body.get("instanceId")
        return value if isinstance(value, str) else None

    @property
    def kind(self) -> str | None:
        value = self.body.get("kind")
        return value if isinstance(value, str) else None

    @property
    def trigger_id(self) -> str | None:
        trigger = self.body.get("trigger")
        value = trigger.get("id") if isinstance(trigger, Mapping) else self.body.get("triggerId")
        return value if isinstance(value, str) else None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "instanceId": self.instance_id, "triggerId": self.trigger_id,
                "reason": self.reason, "detail": self.detail, "errorType": self.error_type,
                "deliveryCount": self.delivery_count, "firstFailureAt": self.first_failure_at,
                "lastFailureAt": self.last_failure_at, "parkedAt": self.parked_at, "body": dict(self.body)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ParkedCommand:
        return cls(id=doc["id"], body=doc["body"], reason=doc["reason"], detail=doc["detail"],
                   delivery_count=int(doc["deliveryCount"]), first_failure_at=doc["firstFailureAt"],
                   last_failure_at=doc["lastFailureAt"], parked_at=doc["parkedAt"], error_type=doc.get("errorType"))


@dataclass(frozen=True, slots=True)
class ParkedQuery:
    """Filters of a listing; all given must hold. `since`/`until` bound `parkedAt` (inclusive/exclusive), in the
    stores' fixed-width form (`moment`): the stores compare times as text."""

    instance_id: str | None = None
    reason: str | None = None
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, moment(value))

    def matches(self, command: ParkedCommand) -> bool:
        return ((self.instance_id is None or command.instance_id == self.instance_id)
                and (self.reason is None or command.reason == self.reason)
                and (self.since is None or command.parked_at >= self.since)
                and (self.until is None or command.parked_at < self.until))

    @property
    def empty(self) -> bool:
        return self == ParkedQuery()


@dataclass(frozen=True, slots=True)
class ParkedPage:
    items: list[ParkedCommand] = field(default_factory=list)
    continuation: str | None = None


def moment(value: str) -> str:
    """An RFC 3339 time as the stores write times (UTC, microseconds, `Z`); ValueError when it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as e:
        raise ValueError(f"{value!r} is not an RFC 3339 time (e.g. 2026-01-31T09:00:00Z)") from e
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z for UTC)")
    return timestamp(parsed)


def sort_key(command: ParkedCommand) -> str:
    return f"{command.parked_at}|{command.id}"


def continuation_of(items: list[ParkedCommand], limit: int) -> str | None:
    return sort_key(items[-1]) if len(items) == limit and items else None


def check_page(limit: int, continuation: str | None) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be from 1 to {MAX_PAGE}, not {limit}")
    if continuation is not None and "|" not in continuation:
        raise ValueError("the continuation token is not one this store made")


class ParkedStore(Protocol):
    def park(self, tenant: str, command: ParkedCommand) -> None:
        """Keep the command (a record with the same id is replaced: parking is idempotent)."""
        ...

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        """Raises ParkedNotFound."""
        ...

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        """Records matching `query`, by `parkedAt` then id, a page at a time (ValueError: a bad limit or token)."""
        ...

    def remove(self, tenant: str, parked_id: str) -> bool:
        """Forget it; False when it was not there."""
        ...

    def close(self) -> None:
        ...


class MemoryParkedStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, dict[str, ParkedCommand]] = {}

    def park(self, tenant: str, command: ParkedCommand) -> None:
        with self._lock:
            self._tenants.setdefault(tenant, {})[command.id] = replace(command, body=_copy(command.body))

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        with self._lock:
            found = self._tenants.get(tenant, {}).get(parked_id)
        if found is None:
            raise ParkedNotFound(tenant, parked_id)
        return found

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        check_page(limit, continuation)
        with self._lock:
            every = sorted(self._tenants.get(tenant, {}).values(), key=sort_key)
        items = [c for c in every if query.matches(c) and (continuation is None or sort_key(c) > continuation)][:limit]
        return ParkedPage(items, continuation_of(items, limit))

    def remove(self, tenant: str, parked_id: str) -> bool:
        with self._lock:
            return self._tenants.get(tenant, {}).pop(parked_id, None) is not None

    def close(self) -> None:
        pass


def _copy(body: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(body))
    return copied


_SCHEMA = """CREATE TABLE IF NOT EXISTS parked (
    id TEXT PRIMARY KEY,
    sort_key TEXT NOT NULL UNIQUE,
    instance_id TEXT,
    reason TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    doc TEXT NOT NULL)"""
_INDEXES = ("CREATE INDEX IF NOT EXISTS parked_instance ON parked (instance_id, sort_key)",
            "CREATE INDEX IF NOT EXISTS parked_reason ON parked (reason, sort_key)")


class SqliteParkedStore:
    """Parked commands in a table of the tenant's own SQLite file (beside its events: siloed like them). Parking is
    rare, so sharing the file's write lock with the appends costs nothing worth a file of its own."""

    embedded = True  # see engine.stores.base.embedded

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0, synchronous: Synchronous = DURABLE) -> None:
        self._databases = TenantDatabases(data_dir, store="parked store", busy_timeout=busy_timeout,
                                          synchronous=synchronous)
        self._ready: set[tuple[int, str]] = set()  # (connection id, tenant) whose table exists

    def park(self, tenant: str, command: ParkedCommand) -> None:
        doc = json.dumps(command.to_dict(), ensure_ascii=False, separators=(",", ":"))
        with self._transaction(tenant) as db:
            db.execute("INSERT OR REPLACE INTO parked (id, sort_key, instance_id, reason, parked_at, doc)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (command.id, sort_key(command), command.instance_id, command.reason, command.parked_at, doc))

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        with self._reading(tenant) as db:
            row = db.execute("SELECT doc FROM parked WHERE id = ?", (parked_id,)).fetchone()
        if row is None:
            raise ParkedNotFound(tenant, parked_id)
        return ParkedCommand.from_dict(json.loads(row[0]))

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        check_page(limit, continuation)
        where, params = ["sort_key > ?"], [continuation or ""]
        for column, value in (("instance_id = ?", query.instance_id), ("reason = ?", query.reason),
                              ("parked_at >= ?", query.since), ("parked_at < ?", query.until)):
            if value is not None:
                where.append(column)
                params.append(value)
        sql = f"SELECT doc FROM parked WHERE {' AND '.join(where)} ORDER BY sort_key LIMIT ?"
        with self._reading(tenant) as db:
            rows = db.execute(sql, (*params, limit)).fetchall()
        items = [ParkedCommand.from_dict(json.loads(doc)) for (doc,) in rows]
        return ParkedPage(items, continuation_of(items, limit))

    def remove(self, tenant: str, parked_id: str) -> bool:
        with self._transaction(tenant) as db:
            return db.execute("DELETE FROM parked WHERE id = ?", (parked_id,)).rowcount == 1

    def close(self) -> None:
        self._databases.close()

    def _connection(self, tenant: str) -> sqlite3.Connection:
        db = self._databases.connection(tenant)
        key = (id(db), tenant)
        if key not in self._ready:
            db.execute(_SCHEMA)
            for statement in _INDEXES:
                db.execute(statement)
            self._ready.add(key)
        return db

    @contextmanager
    def _reading(self, tenant: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connection(tenant)
        except sqlite3.Error as e:
            raise self._databases.unavailable(tenant, e) from e

    @contextmanager
    def _transaction(self, tenant: str) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connection(tenant)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except sqlite3.Error as e:
            raise self._databases.unavailable(tenant, e) from e
