"""The embedded event and definition stores: one SQLite file per tenant (see engine/stores/_sqlite.py).

An append is one `BEGIN IMMEDIATE` transaction of, usually, two prepared statements: insert the commit (its
events and the state after them, as JSON) if, in the same statement, the stream's version read from the
commits (the truth) is the expected one; update the instance row, setting only the columns that changed.
The interest rows are replaced when they changed. Holding the write lock from the start makes the
check and the insert one step for every thread and process.

The instance row is the snapshot and the listing index. It is a cache: `load` rebuilds a missing row, and
brings a row that is behind the commits up to date, by folding the events. Each store also keeps the
instances it last wrote or read in memory, used while their version still matches the commits.

Every `sqlite3` (and file-system) error is translated: a unique violation on the commit's first sequence
becomes `ConcurrencyConflict`, one on its trigger id `DuplicateTrigger`, anything else `StoreUnavailable`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from engine.domain import (
    Commit,
    ConcurrencyConflict,
    DuplicateTrigger,
    Event,
    Instance,
    InstanceNotFound,
    WorkflowNotFound,
    fold,
    timestamp,
)
from engine.stores._sqlite import TenantDatabases, rollback
from engine.stores.base import Page, PendingCommit
from engine.stores.checks import (
    check_commit,
    check_limit,
    decode_continuation,
    encode_continuation,
    workflow_id_of,
)

__all__ = ["SqliteDefinitionStore", "SqliteEventStore"]

# orjson encodes a commit in a fraction of the standard library's time (JSON is a third of an append's CPU).
# It refuses a lone surrogate (a string with no UTF-8 form); the standard encoder stores that as an escape.
_fallback_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _encode(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return _fallback_encode(value)


def _decode(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # an escaped lone surrogate, written by the fallback encoder
        return json.loads(text)

_VERSION = "SELECT last_sequence FROM commits WHERE instance_id = ? ORDER BY first_sequence DESC LIMIT 1"
_HAS_TRIGGER = "SELECT 1 FROM commits WHERE instance_id = ? AND trigger_id = ?"
# The version check and the insert in one statement: the commit is inserted only if the stream's version (from
# the commits, the truth) is the expected one (?8).
_INSERT_COMMIT = (
    "INSERT INTO commits (instance_id, first_sequence, last_sequence, trigger_id, committed_at, events, state)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE coalesce((SELECT last_sequence FROM commits WHERE instance_id = ?1"
    " ORDER BY first_sequence DESC LIMIT 1), 0) = ?8"
)
_ROW = "SELECT state, status, interests FROM instances WHERE id = ?"
_UPSERT_INSTANCE = (
    "INSERT INTO instances (id, workflow_id, state, status, version, interests, doc) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET workflow_id = excluded.workflow_id, state = excluded.state,"
    " status = excluded.status, version = excluded.version, interests = excluded.interests, doc = excluded.doc"
)
# A rebuilt snapshot never replaces a newer one written meanwhile.
_REFRESH_INSTANCE = _UPSERT_INSTANCE + " WHERE excluded.version > instances.version"


def _update_instance(state: bool, status: bool, interests: bool, *, at_version: bool) -> str:
    # Only the columns that changed are set: SQLite rewrites the entries of every index whose column an
    # UPDATE sets, changed or not, and each page it touches is written again to the WAL.
    columns = ["version", "doc", *(["state"] if state else []), *(["status"] if status else []),
               *(["interests"] if interests else [])]
    where = "id = ? AND version = ?" if at_version else "id = ?"
    return f"UPDATE instances SET {', '.join(f'{c} = ?' for c in columns)} WHERE {where}"


_CHANGES = [(state, status, interests) for state in (False, True) for status in (False, True)
            for interests in (False, True)]
_UPDATE_INSTANCE = {changed: _update_instance(*changed, at_version=False) for changed in _CHANGES}
_UPDATE_INSTANCE_AT = {changed: _update_instance(*changed, at_version=True) for changed in _CHANGES}
_DELETE_INTERESTS = "DELETE FROM interests WHERE instance_id = ?"
_INSERT_INTEREST = "INSERT OR IGNORE INTO interests (subject, instance_id) VALUES (?, ?)"
_VERSIONS = (
    "SELECT (SELECT version FROM instances WHERE id = ?1),"
    " (SELECT last_sequence FROM commits WHERE instance_id = ?1 ORDER BY first_sequence DESC LIMIT 1)"
)
_LOAD = (
    "SELECT doc, version,"
    " (SELECT last_sequence FROM commits WHERE instance_id = ?1 ORDER BY first_sequence DESC LIMIT 1)"
    " FROM instances WHERE id = ?1"
)
# From the commit holding event `after + 1` (which may also hold events up to `after`) on.
_READ = (
    "SELECT events FROM commits WHERE instance_id = ?1 AND first_sequence >= coalesce("
    "(SELECT max(first_sequence) FROM commits WHERE instance_id = ?1 AND first_sequence <= ?2 + 1), ?2 + 1)"
    " ORDER BY first_sequence LIMIT ?3"
)
_FIND_TRIGGER = (
    "SELECT position, instance_id, events, state, dispatched FROM commits WHERE instance_id = ? AND trigger_id = ?"
)
_FEED = (
    "SELECT position, instance_id, events, state, dispatched FROM commits WHERE position > ?"
    " ORDER BY position LIMIT ?"
)
_UNDISPATCHED = (
    "SELECT position, instance_id, events, state, dispatched FROM commits WHERE dispatched = 0"
    " ORDER BY position LIMIT ?"
)
_UNDISPATCHED_BEFORE = (
    "SELECT position, instance_id, events, state, dispatched FROM commits WHERE dispatched = 0"
    " AND committed_at < ? ORDER BY position LIMIT ?"
)
_MARK_DISPATCHED = "UPDATE commits SET dispatched = 1 WHERE position = ? AND dispatched = 0"
_INTERESTED = (
    "SELECT DISTINCT instance_id FROM interests WHERE subject IN (SELECT value FROM json_each(?))"
    " ORDER BY instance_id"
)


class SqliteEventStore:
    """The event store of `{data_dir}/tenants/{tenant}.db`. Safe to share between threads; several processes
    may open the same data directory."""

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0, cache_size: int = 4096) -> None:
        self._db = TenantDatabases(data_dir, store="sqlite event store", busy_timeout=busy_timeout,
                                   background_checkpoints=True)
        # The instances last written or loaded, so a load whose version still matches the commits skips decoding
        # the snapshot. Instances are immutable values; the version check keeps a cached one from going stale,
        # even when another process appends.
        self._cache_size = cache_size
        self._cache: dict[tuple[str, str], Instance] = {}
        self._cache_lock = threading.Lock()

    def database_path(self, tenant: str) -> Path:
        """The file that holds the tenant's data."""
        return self._db.path(tenant)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ writing

    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        result = self.append_many(tenant, [PendingCommit(instance_id, expected_version, tuple(events), state)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def append_many(self, tenant: str, commits: Sequence[PendingCommit]) -> list[Commit | Exception]:
        """Several commits in one SQLite transaction (group commit): each is still whole or absent on its own, one
        refused commit does not hold back the others, and the file is written once. A storage failure part way
        through undoes the whole batch (StoreUnavailable).
        Answers, in order, each commit stored or the error that refused it."""
        prepared = []
        for pending in commits:
            events = tuple(pending.events)
            check_commit(pending.instance_id, pending.expected_version, events, pending.state)
            prepared.append((pending, events, _encode(pending.state.to_dict()),
                             _encode([event.to_dict() for event in events])))
        results: list[Commit | Exception] = []
        db = self._db.connection(tenant)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                refused: set[str] = set()
                for pending, events, state_json, events_json in prepared:
                    if pending.instance_id in refused:
                        # Decided on a commit of this batch that was refused: its basis never existed.
                        results.append(ConcurrencyConflict(tenant, pending.instance_id, pending.expected_version,
                                                           None, detail="follows a refused commit of its batch"))
                        continue
                    first, last = events[0], events[-1]
                    try:
                        # A refused INSERT writes nothing: a statement that fails is undone on its own (SQLite's
                        # ABORT), and one that selects nothing (another version) inserts nothing.
                        inserted = db.execute(_INSERT_COMMIT, (pending.instance_id, first.sequence, last.sequence,
                                                               first.trigger_id, first.at, events_json, state_json,
                                                               pending.expected_version))
                        if inserted.rowcount != 1:
                            raise self._refusal(db, tenant, pending.instance_id, pending.expected_version,
                                                first.trigger_id)
                    except (sqlite3.IntegrityError, DuplicateTrigger, ConcurrencyConflict) as e:
                        refused.add(pending.instance_id)
                        results.append(self._translated(e, tenant, pending))
                        continue
                    # Past the INSERT, a failure undoes the whole batch (the transaction is rolled back below).
                    self._write_instance(db, tenant, pending.expected_version, pending.state, state_json)
                    position: int = inserted.lastrowid  # type: ignore[assignment]
                    results.append(Commit(pending.instance_id, events, pending.state, position=position))
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except sqlite3.Error as e:
            raise self._translated(e, tenant, commits[0]) from e
        self._db.committed(tenant)
        for result in results:
            if isinstance(result, Commit):
                self._remember(tenant, result.state)
        return results

    def _translated(self, error: Exception, tenant: str, pending: PendingCommit) -> Exception:
        """Only the two unique indexes mean something about the stream; any other constraint failure is the
        storage failing (the command stays queued), never a reason to think the commit exists."""
        if isinstance(error, DuplicateTrigger | ConcurrencyConflict):
            return error
        message, trigger_id = str(error), pending.events[0].trigger_id
        if message.startswith("UNIQUE constraint failed") and "trigger_id" in message and trigger_id is not None:
            return DuplicateTrigger(tenant, pending.instance_id, trigger_id)
        if message.startswith("UNIQUE constraint failed") and "first_sequence" in message:
            return ConcurrencyConflict(tenant, pending.instance_id, pending.expected_version, None)
        return self._db.unavailable(tenant, error)

    @staticmethod
    def _refusal(db: sqlite3.Connection, tenant: str, instance_id: str, expected_version: int,
                 trigger_id: str | None) -> Exception:
        """Why a commit was not inserted: its trigger is recorded already (whatever the version), or the stream
        is at another version."""
        if trigger_id is not None and db.execute(_HAS_TRIGGER, (instance_id, trigger_id)).fetchone():
            return DuplicateTrigger(tenant, instance_id, trigger_id)
        row = db.execute(_VERSION, (instance_id,)).fetchone()
        return ConcurrencyConflict(tenant, instance_id, expected_version, row[0] if row else 0)

    def _write_instance(self, db: sqlite3.Connection, tenant: str, expected_version: int, state: Instance,
                        state_json: str) -> None:
        """Bring the instance row and its interest rows to `state`, in the append's transaction."""
        instance_id, status = state.id, str(state.status)
        cached = self._cache.get((tenant, instance_id))
        if cached is not None and cached.version == expected_version:
            # A row at the expected version holds the columns of the instance cached at that version, so it
            # is known what changes without reading it; the version in the WHERE makes sure of it.
            changed = (cached.state != state.state, cached.status != state.status,
                       cached.interests != state.interests)
            if db.execute(_UPDATE_INSTANCE_AT[changed],
                          _update_params(changed, state, status, state_json, instance_id, expected_version),
                          ).rowcount == 1:
                if changed[2]:
                    self._write_interests(db, instance_id, state.interests)
                return
        interests_json = _encode(list(state.interests))
        row = None if expected_version == 0 else db.execute(_ROW, (instance_id,)).fetchone()
        if row is None:  # a new instance, or its row was lost
            db.execute(_UPSERT_INSTANCE, (instance_id, state.workflow_id, state.state, status, state.version,
                                          interests_json, state_json))
            self._write_interests(db, instance_id, state.interests)
            return
        old_state, old_status, old_interests = row
        changed = (old_state != state.state, old_status != status, old_interests != interests_json)
        db.execute(_UPDATE_INSTANCE[changed],
                   _update_params(changed, state, status, state_json, instance_id, None))
        if changed[2]:
            self._write_interests(db, instance_id, state.interests)

    @staticmethod
    def _write_interests(db: sqlite3.Connection, instance_id: str, interests: Sequence[str]) -> None:
        db.execute(_DELETE_INTERESTS, (instance_id,))
        if interests:
            db.executemany(_INSERT_INTEREST, [(subject, instance_id) for subject in interests])

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        if not positions:
            return
        db = self._db.connection(tenant)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_MARK_DISPATCHED, [(position,) for position in positions])
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e

    # ------------------------------------------------------------------------------------------ reading

    def load(self, tenant: str, instance_id: str) -> Instance:
        db = self._db.connection(tenant)
        cached = self._cache.get((tenant, instance_id))
        try:
            if cached is not None:
                row_version, version = db.execute(_VERSIONS, (instance_id,)).fetchone()
                if row_version == version == cached.version:
                    return cached
            row = db.execute(_LOAD, (instance_id,)).fetchone()
            if row is not None and row[1] == row[2]:
                instance = Instance.from_dict(_decode(row[0]))
            elif row is None:
                if db.execute(_VERSION, (instance_id,)).fetchone() is None:
                    raise InstanceNotFound(tenant, instance_id)
                instance = self._rebuild(db, tenant, instance_id, None, 0)
            elif row[2] is None:  # a row without commits is no instance: the commits are the truth
                raise InstanceNotFound(tenant, instance_id)
            elif row[1] > row[2]:  # a row ahead of the commits cannot be trusted either
                instance = self._rebuild(db, tenant, instance_id, None, 0)
            else:
                base = Instance.from_dict(_decode(row[0]))
                instance = self._rebuild(db, tenant, instance_id, base, base.version)
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        self._remember(tenant, instance)
        return instance

    def _remember(self, tenant: str, instance: Instance) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # the oldest entry
            self._cache[(tenant, instance.id)] = instance

    def _rebuild(self, db: sqlite3.Connection, tenant: str, instance_id: str, base: Instance | None,
                 after: int) -> Instance:
        instance = fold(base, self._read(db, instance_id, after, None))
        if instance is None:
            raise InstanceNotFound(tenant, instance_id)
        doc = _encode(instance.to_dict())
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(_REFRESH_INSTANCE, (instance_id, instance.workflow_id, instance.state,
                                               str(instance.status), instance.version,
                                               _encode(list(instance.interests)), doc))
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except sqlite3.OperationalError:
            pass  # the snapshot is a cache: the instance is right without it, and the next load tries again
        return instance

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        if limit is not None and limit <= 0:
            return []
        db = self._db.connection(tenant)
        try:
            return self._read(db, instance_id, max(after, 0), limit)
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e

    @staticmethod
    def _read(db: sqlite3.Connection, instance_id: str, after: int, limit: int | None) -> list[Event]:
        # Every commit holds at least one event past `after`, so `limit` commits hold at least `limit` events.
        rows = db.execute(_READ, (instance_id, after, -1 if limit is None else limit)).fetchall()
        events = [Event.from_dict(doc) for (text,) in rows for doc in _decode(text) if doc["sequence"] > after]
        return events if limit is None else events[:limit]

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        db = self._db.connection(tenant)
        try:
            row = db.execute(_FIND_TRIGGER, (instance_id, trigger_id)).fetchone()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        return None if row is None else _commit(row)

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        check_limit(limit)
        after = decode_continuation(continuation)
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("workflow_id", workflow_id), ("state", state), ("id", after)):
            if value is not None:
                where.append(f"{column} {'>' if column == 'id' else '='} ?")
                params.append(str(value))
        sql = "SELECT doc FROM instances" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id LIMIT ?"
        params.append(limit + 1)
        db = self._db.connection(tenant)
        try:
            rows = db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        items = [Instance.from_dict(_decode(doc)) for (doc,) in rows[:limit]]
        return Page(items, encode_continuation(items[-1].id) if len(rows) > limit else None)

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        if not subjects:
            return []
        db = self._db.connection(tenant)
        try:
            return [instance_id for (instance_id,) in db.execute(_INTERESTED, (_encode(list(subjects)),))]
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        return self._commits(tenant, _FEED, (after, limit))

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        if committed_before is None:
            return self._commits(tenant, _UNDISPATCHED, (limit,))
        return self._commits(tenant, _UNDISPATCHED_BEFORE, (committed_before, limit))

    def _commits(self, tenant: str, sql: str, params: tuple[Any, ...]) -> list[Commit]:
        if params[-1] <= 0:
            return []
        db = self._db.connection(tenant)
        try:
            rows = db.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        return [_commit(row) for row in rows]

    def ping(self, tenant: str) -> None:
        db = self._db.connection(tenant)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e


def _update_params(changed: tuple[bool, bool, bool], state: Instance, status: str, state_json: str,
                   instance_id: str, at_version: int | None) -> list[Any]:
    params: list[Any] = [state.version, state_json]
    if changed[0]:
        params.append(state.state)
    if changed[1]:
        params.append(status)
    if changed[2]:
        params.append(_encode(list(state.interests)))
    params.append(instance_id)
    if at_version is not None:
        params.append(at_version)
    return params


def _commit(row: tuple[Any, ...]) -> Commit:
    position, instance_id, events, state, dispatched = row
    return Commit(instance_id, tuple(Event.from_dict(doc) for doc in _decode(events)),
                  Instance.from_dict(_decode(state)), position=position, dispatched=bool(dispatched))


class SqliteDefinitionStore:
    """Workflow definitions, every version kept, in the same per-tenant files as the events."""

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0) -> None:
        self._db = TenantDatabases(data_dir, store="sqlite definition store", busy_timeout=busy_timeout)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteDefinitionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, tenant: str, document: Mapping[str, Any]) -> int:
        workflow_id = workflow_id_of(document)
        text = _encode(document)
        created_at = timestamp(datetime.now(UTC))
        db = self._db.connection(tenant)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                (latest,) = db.execute("SELECT coalesce(max(version), 0) FROM definitions WHERE workflow_id = ?",
                                       (workflow_id,)).fetchone()
                db.execute("INSERT INTO definitions (workflow_id, version, document, created_at) VALUES (?, ?, ?, ?)",
                           (workflow_id, latest + 1, text, created_at))
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        return int(latest) + 1

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        db = self._db.connection(tenant)
        try:
            if version is None:
                row = db.execute("SELECT version, document FROM definitions WHERE workflow_id = ?"
                                 " ORDER BY version DESC LIMIT 1", (workflow_id,)).fetchone()
            else:
                row = db.execute("SELECT version, document FROM definitions WHERE workflow_id = ? AND version = ?",
                                 (workflow_id, version)).fetchone()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        if row is None:
            raise WorkflowNotFound(tenant, workflow_id, version)
        document: dict[str, Any] = _decode(row[1])
        return int(row[0]), document

    def list(self, tenant: str) -> list[tuple[str, int]]:
        db = self._db.connection(tenant)
        try:
            rows = db.execute("SELECT workflow_id, max(version) FROM definitions GROUP BY workflow_id"
                              " ORDER BY workflow_id").fetchall()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        return [(workflow_id, int(version)) for workflow_id, version in rows]
