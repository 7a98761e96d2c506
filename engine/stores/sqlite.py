"""The embedded event and definition stores: one SQLite file per tenant (see engine/drivers/sqlite.py).

An append is one `BEGIN IMMEDIATE` transaction, usually of one prepared statement: insert the commit (its events
and the instance after them, as JSON) if, in the same statement, the stream's version read from the commits (the
truth) is the expected one. Holding the write lock from the start makes the check and the insert one step for
every thread and process.

The instance in the last commit is the snapshot: a load reads one row whatever the length of the history, and
the snapshot can never be behind the events, being written with them. The `instances` and `interests` tables
are the listing and broadcast indexes: a row is written in the commit's transaction when a column it lists (state,
status, interests) changes, so an index is right after every commit. Each store also keeps the instances it last
wrote or read in memory, used while their version is still the head's.

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
    DefinitionChanged,
    DuplicateTrigger,
    Event,
    Instance,
    InstanceNotFound,
    WorkflowNotFound,
    timestamp,
)
from engine.drivers.sqlite import DURABLE, Synchronous, TenantDatabases, rollback, unsynced
from engine.stores._rides import MarkRides, Ride
from engine.stores.base import Page, PendingCommit, load_expected
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
# The head of a stream: its version and, unless that is the version the caller already holds (?2), the instance
# after it (the snapshot). No row: no such instance.
_HEAD = (
    "SELECT last_sequence, CASE WHEN last_sequence = ?2 THEN NULL ELSE state END FROM commits WHERE instance_id = ?1"
    " ORDER BY first_sequence DESC LIMIT 1"
)
# The same, and whether the trigger ?3 is recorded (its commit's position): find_trigger followed by load.
_FIND_AND_HEAD = (
    "SELECT (SELECT position FROM commits WHERE instance_id = ?1 AND trigger_id = ?3), last_sequence,"
    " CASE WHEN last_sequence = ?2 THEN NULL ELSE state END FROM commits WHERE instance_id = ?1"
    " ORDER BY first_sequence DESC LIMIT 1"
)
_ROW = "SELECT state, status, interests FROM instances WHERE id = ?"
_UPSERT_INSTANCE = (
    "INSERT INTO instances (id, workflow_id, state, status, interests) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET workflow_id = excluded.workflow_id, state = excluded.state,"
    " status = excluded.status, interests = excluded.interests"
)


def _update_instance(state: bool, status: bool, interests: bool) -> str:
    # Only the columns that changed are set: SQLite rewrites the entries of every index whose column an
    # UPDATE sets, changed or not, and each page it touches is written again to the WAL.
    columns = [*(["state"] if state else []), *(["status"] if status else []), *(["interests"] if interests else [])]
    return f"UPDATE instances SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"


_UPDATE_INSTANCE = {(state, status, interests): _update_instance(state, status, interests)
                    for state in (False, True) for status in (False, True) for interests in (False, True)
                    if state or status or interests}
_DELETE_INTERESTS = "DELETE FROM interests WHERE instance_id = ?"
_INSERT_INTEREST = "INSERT OR IGNORE INTO interests (subject, instance_id) VALUES (?, ?)"
# From the commit holding event `after + 1` (which may also hold events up to `after`) on.
_READ = (
    "SELECT events FROM commits WHERE instance_id = ?1 AND first_sequence >= coalesce("
    "(SELECT max(first_sequence) FROM commits WHERE instance_id = ?1 AND first_sequence <= ?2 + 1), ?2 + 1)"
    " ORDER BY first_sequence LIMIT ?3"
)
_FIND_TRIGGER = (
    "SELECT position, instance_id, events, state, dispatched FROM commits WHERE instance_id = ? AND trigger_id = ?"
)
# Listed instances are the state of their last commit; a listing row without commits is no instance.
_LIST = (
    "SELECT c.state FROM instances AS i JOIN commits AS c ON c.position = (SELECT position FROM commits"
    " WHERE instance_id = i.id ORDER BY first_sequence DESC LIMIT 1)"
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

    embedded = True  # see engine.stores.base.embedded

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0, cache_size: int = 4096,
                 synchronous: Synchronous = DURABLE) -> None:
        self._db = TenantDatabases(data_dir, store="sqlite event store", busy_timeout=busy_timeout,
                                   background_checkpoints=True, synchronous=synchronous)
        # The instances last written or loaded, so a load whose version still matches the commits skips decoding
        # the snapshot. Instances are immutable values; the version check keeps a cached one from going stale,
        # even when another process appends.
        self._cache_size = cache_size
        self._cache: dict[tuple[str, str], Instance] = {}
        self._cache_lock = threading.Lock()
        # What find_trigger read for the load that follows it at once on this thread (see base.load_follows).
        self._local = threading.local()
        self._busy_timeout = busy_timeout
        self.rides = MarkRides()  # outbox marks written by the next append (engine/stores/_rides.py)

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
        self._local.handoff = None
        db = self._db.connection(tenant)
        rides: list[Ride] = []
        marked = False
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                rides = self.rides.take(tenant)
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
                    self._write_instance(db, tenant, pending.expected_version, pending.state)
                    position: int = inserted.lastrowid  # type: ignore[assignment]
                    results.append(Commit(pending.instance_id, events, pending.state, position=position))
                ridden = _write_marks(db, rides)
                db.execute("COMMIT")
                marked = ridden
            except BaseException:
                rollback(db)
                raise
        except sqlite3.Error as e:
            raise self._translated(e, tenant, commits[0]) from e
        finally:
            self.rides.finished(rides, written=marked)
        self._db.committed(tenant)
        self._remember(tenant, *(result.state for result in results if isinstance(result, Commit)))
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

    def _write_instance(self, db: sqlite3.Connection, tenant: str, expected_version: int, state: Instance) -> None:
        """Bring the listing row and the interest rows to `state`, in the append's transaction, when they change."""
        instance_id, status = state.id, str(state.status)
        cached = self._cache.get((tenant, instance_id))
        row: tuple[str, str, str] | None = None
        if cached is not None and cached.version == expected_version:
            # The commit was stored on the instance cached at that version, which is what the row lists: it is
            # known what changes without reading it.
            changed = (cached.state != state.state, cached.status != state.status,
                       cached.interests != state.interests)
            if not any(changed):
                return
            if db.execute(_UPDATE_INSTANCE[changed], _update_params(changed, state, status, instance_id)).rowcount:
                if changed[2]:
                    self._write_interests(db, instance_id, state.interests)
                return
        elif expected_version > 0:
            row = db.execute(_ROW, (instance_id,)).fetchone()
        interests_json = _encode(list(state.interests))
        if row is None:  # a new instance, or its row was lost
            db.execute(_UPSERT_INSTANCE, (instance_id, state.workflow_id, state.state, status, interests_json))
            self._write_interests(db, instance_id, state.interests)
            return
        old_state, old_status, old_interests = row
        changed = (old_state != state.state, old_status != status, old_interests != interests_json)
        if any(changed):
            db.execute(_UPDATE_INSTANCE[changed], _update_params(changed, state, status, instance_id))
        if changed[2]:
            self._write_interests(db, instance_id, state.interests)

    @staticmethod
    def _write_interests(db: sqlite3.Connection, instance_id: str, interests: Sequence[str]) -> None:
        db.execute(_DELETE_INTERESTS, (instance_id,))
        if interests:
            db.executemany(_INSERT_INTEREST, [(subject, instance_id) for subject in interests])

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        """Written by the next append of the tenant when one comes within moments, else in a transaction of its
        own (see engine/stores/_rides.py)."""
        if not positions or self.rides.offer(tenant, positions, patience=self._busy_timeout):
            return
        self.rides.alone += 1
        db = self._db.connection(tenant)
        try:
            # A mark lost to a power cut only has the sweeper publish the commit again: not synced on its own.
            with unsynced(db, self._db.synchronous):
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
        handoff = getattr(self._local, "handoff", None)
        self._local.handoff = None
        if handoff is not None and handoff[0] == (tenant, instance_id) and load_expected():
            if handoff[1] is None:
                raise InstanceNotFound(tenant, instance_id)
            handed: Instance = handoff[1]
            return handed
        cached = self._cache.get((tenant, instance_id))
        db = self._db.connection(tenant)
        try:
            row = db.execute(_HEAD, (instance_id, -1 if cached is None else cached.version)).fetchone()
        except sqlite3.Error as e:
            raise self._db.unavailable(tenant, e) from e
        instance = self._head(tenant, instance_id, cached, row)
        if instance is None:
            raise InstanceNotFound(tenant, instance_id)
        return instance

    def _head(self, tenant: str, instance_id: str, cached: Instance | None, row: tuple[Any, ...] | None,
              ) -> Instance | None:
        """The instance from a head row (version, state or NULL when the cached instance is at that version)."""
        if row is None:
            return None
        if row[1] is None:
            assert cached is not None
            return cached
        instance = Instance.from_dict(_decode(row[1]))
        self._remember(tenant, instance)
        return instance

    def _remember(self, tenant: str, *instances: Instance) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            for instance in instances:
                if len(self._cache) >= self._cache_size:
                    del self._cache[next(iter(self._cache))]  # the oldest entry
                self._cache[(tenant, instance.id)] = instance

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        self._local.handoff = None
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
            if load_expected():
                # The processor's find-then-load: one statement answers both, and the load takes the head from here.
                cached = self._cache.get((tenant, instance_id))
                head = db.execute(_FIND_AND_HEAD, (instance_id, -1 if cached is None else cached.version,
                                                   trigger_id)).fetchone()
                if head is None or head[0] is None:
                    self._local.handoff = ((tenant, instance_id),
                                           self._head(tenant, instance_id, cached, head and head[1:]))
                    return None
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
                where.append(f"i.{column} {'>' if column == 'id' else '='} ?")
                params.append(str(value))
        sql = _LIST + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY i.id LIMIT ?"
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


def _write_marks(db: sqlite3.Connection, rides: Sequence[Ride]) -> bool:
    """The marks riding with an append, in its transaction; False when they could not be written (their callers
    then write them). A failed statement is undone on its own: the commits of the append are not touched."""
    if not rides:
        return False
    try:
        db.executemany(_MARK_DISPATCHED, [(position,) for ride in rides for position in ride.positions])
    except sqlite3.Error:
        return False
    return True


def _update_params(changed: tuple[bool, bool, bool], state: Instance, status: str, instance_id: str) -> list[Any]:
    params: list[Any] = []
    if changed[0]:
        params.append(state.state)
    if changed[1]:
        params.append(status)
    if changed[2]:
        params.append(_encode(list(state.interests)))
    params.append(instance_id)
    return params


def _commit(row: tuple[Any, ...]) -> Commit:
    position, instance_id, events, state, dispatched = row
    return Commit(instance_id, tuple(Event.from_dict(doc) for doc in _decode(events)),
                  Instance.from_dict(_decode(state)), position=position, dispatched=bool(dispatched))


class SqliteDefinitionStore:
    """Workflow definitions, every version kept, in the same per-tenant files as the events."""

    def __init__(self, data_dir: Path, *, busy_timeout: float = 10.0, synchronous: Synchronous = DURABLE) -> None:
        self._db = TenantDatabases(data_dir, store="sqlite definition store", busy_timeout=busy_timeout,
                                   synchronous=synchronous)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteDefinitionStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        workflow_id = workflow_id_of(document)
        text = _encode(document)
        created_at = timestamp(datetime.now(UTC))
        db = self._db.connection(tenant)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                (latest,) = db.execute("SELECT coalesce(max(version), 0) FROM definitions WHERE workflow_id = ?",
                                       (workflow_id,)).fetchone()
                if expected_version is not None and expected_version != latest:
                    raise DefinitionChanged(tenant, workflow_id, expected_version, int(latest))
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
