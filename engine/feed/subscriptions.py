"""Who receives the change feed: subscriptions, where they come from, their state, and the store that keeps it.

Subscriptions come from four places, and are all the same `Subscription` to the dispatcher:

    source       name                               spec (endpoint, types, mode, secret) from
    api          chosen by the client               the subscription store (PUT /tenants/{t}/subscriptions/{name})
    definition   definition:{workflowId}:{hash}     the latest version of the workflow's `eventSubscriptions`
    static       static:{name}                      the engine's configuration (a JSON list, e.g. an env var)
    tenant       eventgrid:topic                    the tenant's configuration (`eventGrid`: its topic endpoint)

Whatever the source, the *state* of a subscription (status, consecutive failures, last error, backlog) is kept in
the store under its name, so a definition's webhook that keeps failing is paused, visible and resumable like any.
A name with a ':' can never be chosen through the API, so derived names never collide with a client's.

Status: `pending` (registered, the endpoint has not consented to the abuse-protection handshake: it gets
nothing), `active`, `paused` (too many consecutive failures, or paused by hand: commits it should get are owed
from `backlogFrom` on and delivered after resume), `gone` (the endpoint answered 410: it gets nothing until
resumed).

Per-subscription delivery tracking: a commit that could not be delivered to every subscription stays
undispatched; the subscriptions it did reach are recorded (`record_deliveries`), so the sweeper's retry skips
them. Records are dropped once the commit is dispatched. A commit delivered to all at the first attempt writes
nothing here.

The SQLite store keeps one file per tenant, `{data_dir}/feed/{tenant}.db` (WAL), apart from the tenant's event
file so that delivery bookkeeping never competes with appends for the event file's write lock.

    WaymarkError
    ├── NotFound
    │   └── SubscriptionNotFound
    └── InvalidSubscription      a subscription request or configuration with problems (all listed)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from engine.domain import NotFound, StoreUnavailable, WaymarkError, WorkflowNotFound, timestamp
from engine.drivers.sqlite import DURABLE, Synchronous, checked_synchronous, durable, rollback
from engine.feed.cloudevents import ALL_TYPES
from engine.tenants.sealing import Sealer

__all__ = [
    "NAME_PATTERN", "InvalidSubscription", "Kind", "MemorySubscriptionStore", "Mode", "Source",
    "SqliteSubscriptionStore", "StaticSubscription", "Subscription", "SubscriptionCatalog", "SubscriptionNotFound",
    "SubscriptionStatus", "SubscriptionStore", "check_types", "parse_static_subscriptions",
]

log = logging.getLogger("waymark.feed")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # as the SQLite event store's file names
EVENTGRID_NAME = "eventgrid:topic"


class Mode(StrEnum):
    STRUCTURED = "structured"
    BINARY = "binary"


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    GONE = "gone"


class Source(StrEnum):
    API = "api"
    DEFINITION = "definition"
    STATIC = "static"
    TENANT = "tenant"


class Kind(StrEnum):
    WEBHOOK = "webhook"
    EVENTGRID = "eventgrid"


class SubscriptionNotFound(NotFound):
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        super().__init__(f"subscription {name!r} does not exist in tenant {tenant!r}")


class InvalidSubscription(WaymarkError):
    def __init__(self, name: str | None, problems: Sequence[str]) -> None:
        self.name = name
        self.problems = list(problems)
        super().__init__(f"subscription {name!r} is invalid: {'; '.join(self.problems)}")


class TooManySubscriptions(WaymarkError):
    """A new API subscription past the tenant's limit (`max_subscriptions_per_tenant`)."""

    def __init__(self, tenant: str, name: str, limit: int) -> None:
        self.tenant = tenant
        self.name = name
        self.limit = limit
        super().__init__(f"tenant {tenant!r} has {limit} subscriptions, its limit: delete one before subscribing "
                         f"{name!r}")


def check_types(types: Iterable[str] | None) -> frozenset[str] | None:
    """A types filter (None: every type), or InvalidSubscription naming the unknown types."""
    if types is None:
        return None
    chosen = frozenset(types)
    unknown = sorted(chosen - ALL_TYPES)
    if unknown:
        raise InvalidSubscription(None, [f"unknown event type(s) {', '.join(unknown)}; known: "
                                         f"{', '.join(sorted(ALL_TYPES))}"])
    return chosen


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    endpoint: str
    types: frozenset[str] | None = None  # None: every event type
    secret: str | None = field(default=None, repr=False)  # webhook HMAC secret; Event Grid access key
    mode: Mode = Mode.STRUCTURED
    source: Source = Source.API
    kind: Kind = Kind.WEBHOOK
    workflow_id: str | None = None  # a definition's subscription sees only its workflow's events
    status: SubscriptionStatus = SubscriptionStatus.PENDING
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    backlog_from: int | None = None  # the lowest feed position owed (while paused, and until caught up)
    auth_audience: str | None = None  # sent with a token of the app's managed identity for this audience
    paused_at: str | None = None  # when it was last paused
    resume_at: str | None = None  # paused by failures: when it resumes by itself (engine/feed/pausing.py)
    pauses: int = 0  # pauses by failures in a row (each twice as long as the one before)
    created_at: str = ""
    updated_at: str = ""

    def wants(self, ce_type: str) -> bool:
        return self.types is None or ce_type in self.types

    def selects(self, workflow_id: str) -> bool:
        return self.workflow_id is None or self.workflow_id == workflow_id

    def same_spec(self, other: Subscription) -> bool:
        return (self.endpoint, self.types, self.secret, self.mode, self.kind, self.workflow_id,
                self.auth_audience) == (other.endpoint, other.types, other.secret, other.mode, other.kind,
                                        other.workflow_id, other.auth_audience)

    def with_spec_of(self, spec: Subscription) -> Subscription:
        """This state with `spec`'s endpoint, filter, secret and mode (a definition or config that changed)."""
        return dataclasses.replace(self, endpoint=spec.endpoint, types=spec.types, secret=spec.secret,
                                   mode=spec.mode, source=spec.source, kind=spec.kind, workflow_id=spec.workflow_id,
                                   auth_audience=spec.auth_audience)

    def to_public(self) -> dict[str, Any]:
        """What the API shows: never the secret."""
        return {
            "name": self.name, "endpoint": self.endpoint,
            "types": sorted(self.types) if self.types is not None else None,
            "mode": str(self.mode), "source": str(self.source), "kind": str(self.kind),
            "workflowId": self.workflow_id, "hasSecret": self.secret is not None,
            "auth": {"type": "managedIdentity", "audience": self.auth_audience} if self.auth_audience else None,
            "status": str(self.status), "consecutiveFailures": self.consecutive_failures,
            "lastError": self.last_error, "lastErrorAt": self.last_error_at, "backlogFrom": self.backlog_from,
            "pausedAt": self.paused_at, "resumeAt": self.resume_at, "pauses": self.pauses,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
        }

    def to_record(self, sealer: Sealer | None = None) -> dict[str, Any]:
        """What the store keeps: with the secret, sealed when the store has a sealer (engine/tenants/sealing.py)."""
        record = self.to_public()
        del record["hasSecret"]
        record["secret"] = sealer.seal_text(self.secret) if sealer is not None and self.secret else self.secret
        return record

    @classmethod
    def from_record(cls, doc: Mapping[str, Any], sealer: Sealer | None = None) -> Subscription:
        """`to_record`'s inverse. A secret stored before sealing began opens as it is."""
        types = doc.get("types")
        secret = doc.get("secret")
        if sealer is not None and isinstance(secret, str):
            secret = sealer.open_text(secret)
        return cls(
            name=doc["name"], endpoint=doc["endpoint"], types=frozenset(types) if types is not None else None,
            secret=secret, mode=Mode(doc.get("mode", "structured")), source=Source(doc.get("source", "api")),
            kind=Kind(doc.get("kind", "webhook")), workflow_id=doc.get("workflowId"),
            status=SubscriptionStatus(doc.get("status", "pending")),
            consecutive_failures=int(doc.get("consecutiveFailures", 0)), last_error=doc.get("lastError"),
            last_error_at=doc.get("lastErrorAt"), backlog_from=doc.get("backlogFrom"),
            paused_at=doc.get("pausedAt"), resume_at=doc.get("resumeAt"), pauses=int(doc.get("pauses") or 0),
            created_at=doc.get("createdAt", ""), updated_at=doc.get("updatedAt", ""),
            auth_audience=(doc.get("auth") or {}).get("audience"),
        )


# ---------------------------------------------------------------------------------------------- the store port

Change = Callable[[Subscription], Subscription]


class SubscriptionStore(Protocol):
    def get(self, tenant: str, name: str) -> Subscription | None:
        ...

    def list(self, tenant: str) -> list[Subscription]:
        """Every stored subscription of the tenant, ordered by name."""
        ...

    def save(self, tenant: str, subscription: Subscription) -> None:
        """Insert or replace."""
        ...

    def delete(self, tenant: str, name: str) -> bool:
        """True when there was one. Its delivery records go with it."""
        ...

    def modify(self, tenant: str, name: str, change: Change, *,
               default: Subscription | None = None) -> Subscription | None:
        """Atomically replace the stored subscription with `change(stored)` and return it. When none is stored,
        `change(default)` is stored (None and nothing stored when `default` is None)."""
        ...

    def record_deliveries(self, tenant: str, position: int, names: Iterable[str]) -> None:
        ...

    def deliveries(self, tenant: str, position: int) -> set[str]:
        """Names of the subscriptions a commit is recorded as delivered to."""
        ...

    def forget_deliveries(self, tenant: str, positions: Sequence[int]) -> None:
        ...

    def close(self) -> None:
        ...


class MemorySubscriptionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, dict[str, Subscription]] = {}
        self._deliveries: dict[str, dict[int, set[str]]] = {}

    def get(self, tenant: str, name: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(tenant, {}).get(name)

    def list(self, tenant: str) -> list[Subscription]:
        with self._lock:
            return sorted(self._subscriptions.get(tenant, {}).values(), key=lambda s: s.name)

    def save(self, tenant: str, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.setdefault(tenant, {})[subscription.name] = subscription

    def delete(self, tenant: str, name: str) -> bool:
        with self._lock:
            found = self._subscriptions.get(tenant, {}).pop(name, None)
            for names in self._deliveries.get(tenant, {}).values():
                names.discard(name)
            return found is not None

    def modify(self, tenant: str, name: str, change: Change, *,
               default: Subscription | None = None) -> Subscription | None:
        with self._lock:
            silo = self._subscriptions.setdefault(tenant, {})
            current = silo.get(name, default)
            if current is None:
                return None
            changed = change(current)
            silo[name] = changed
            return changed

    def record_deliveries(self, tenant: str, position: int, names: Iterable[str]) -> None:
        with self._lock:
            self._deliveries.setdefault(tenant, {}).setdefault(position, set()).update(names)

    def deliveries(self, tenant: str, position: int) -> set[str]:
        with self._lock:
            return set(self._deliveries.get(tenant, {}).get(position, ()))

    def forget_deliveries(self, tenant: str, positions: Sequence[int]) -> None:
        with self._lock:
            silo = self._deliveries.get(tenant, {})
            for position in positions:
                silo.pop(position, None)

    def close(self) -> None:
        return None


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


# ---------------------------------------------------------------------------------------------- static configuration

@dataclass(frozen=True, slots=True)
class StaticSubscription:
    """A webhook the engine's configuration subscribes, for every tenant or the listed ones."""

    name: str
    endpoint: str
    types: frozenset[str] | None = None
    secret: str | None = field(default=None, repr=False)
    mode: Mode = Mode.STRUCTURED
    tenants: frozenset[str] | None = None

    def subscription(self) -> Subscription:
        return Subscription(name=f"static:{self.name}", endpoint=self.endpoint, types=self.types, secret=self.secret,
                            mode=self.mode, source=Source.STATIC)


def parse_static_subscriptions(value: str | Sequence[Mapping[str, Any]] | None) -> list[StaticSubscription]:
    """Static subscriptions from configuration: a JSON list (e.g. the `WAYMARK_FEED_SUBSCRIPTIONS` variable) of
    `{"name", "endpoint", "types"?, "secret"?, "mode"?, "tenants"?}`. Every problem is listed at once."""
    if value is None or value == "":
        return []
    items = json.loads(value) if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidSubscription(None, ["static subscriptions must be a JSON list"])
    problems: list[str] = []
    result: list[StaticSubscription] = []
    for index, item in enumerate(items):
        where = f"[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where} must be an object")
            continue
        name, endpoint = item.get("name"), item.get("endpoint")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            problems.append(f"{where}.name must be letters, digits, '.', '_' or '-'")
            continue
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            problems.append(f"{where}.endpoint must be an absolute http(s) URL")
            continue
        try:
            types = check_types(item.get("types"))
            mode = Mode(item.get("mode", "structured"))
        except (InvalidSubscription, ValueError) as e:
            problems.append(f"{where}: {e}")
            continue
        tenants = item.get("tenants")
        result.append(StaticSubscription(name, endpoint, types, item.get("secret"), mode,
                                         frozenset(tenants) if tenants is not None else None))
    if problems:
        raise InvalidSubscription(None, problems)
    return result


# ---------------------------------------------------------------------------------------------- the catalog

class _Definitions(Protocol):
    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> Any:
        ...


def _definition_subscriptions(workflow_id: str, items: Iterable[Mapping[str, Any]]) -> list[Subscription]:
    result = []
    for item in items:
        endpoint = item.get("endpoint")
        if not isinstance(endpoint, str):
            continue
        digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
        try:
            types = check_types(item.get("types"))
        except InvalidSubscription:
            log.warning("ignoring the types filter of %s's subscription to %s: %s", workflow_id, endpoint,
                        item.get("types"))
            types = None
        try:
            mode = Mode(item.get("mode", "structured"))
        except ValueError:
            mode = Mode.STRUCTURED
        secret = item.get("secret")
        result.append(Subscription(name=f"definition:{workflow_id}:{digest}", endpoint=endpoint, types=types,
                                   secret=secret if isinstance(secret, str) else None, mode=mode,
                                   source=Source.DEFINITION, workflow_id=workflow_id))
    return result


class SubscriptionCatalog:
    """Every subscription of a tenant, from all four sources, with its current state.

    Reads are cached for `cache_seconds` (the dispatcher asks on every commit); writes made through the catalog
    refresh the cache at once, so in one process a change is seen immediately and across processes within
    `cache_seconds`.
    """

    def __init__(self, store: SubscriptionStore, *, definitions: _Definitions | None = None,
                 static: Sequence[StaticSubscription] = (),
                 tenant_config: Callable[[str], Mapping[str, Any]] | None = None, cache_seconds: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.definitions = definitions
        self.static = list(static)
        self.tenant_config = tenant_config
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.now = now
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[float, dict[str, Subscription]]] = {}
        self._derived: dict[tuple[str, str], tuple[float, list[Subscription]]] = {}

    def timestamp(self) -> str:
        return timestamp(self.now())

    # -------------------------------------------------------------------------------------- reading

    def _stored(self, tenant: str) -> dict[str, Subscription]:
        with self._lock:
            cached = self._rows.get(tenant)
        if cached is not None and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        rows = {s.name: s for s in self.store.list(tenant)}
        with self._lock:
            self._rows[tenant] = (self.monotonic(), rows)
        return rows

    def _cached_derived(self, key: tuple[str, str], build: Callable[[], list[Subscription]]) -> list[Subscription]:
        with self._lock:
            cached = self._derived.get(key)
        if cached is not None and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        built = build()
        with self._lock:
            self._derived[key] = (self.monotonic(), built)
        return built

    def _of_definition(self, tenant: str, workflow_id: str) -> list[Subscription]:
        def build() -> list[Subscription]:
            if self.definitions is None:
                return []
            try:
                definition = self.definitions.get(tenant, workflow_id)
            except WorkflowNotFound:
                return []
            return _definition_subscriptions(workflow_id, getattr(definition, "event_subscriptions", ()))

        return self._cached_derived((tenant, "definition:" + workflow_id), build)

    def _of_tenant(self, tenant: str) -> list[Subscription]:
        def build() -> list[Subscription]:
            found = [s.subscription() for s in self.static if s.tenants is None or tenant in s.tenants]
            grid = self._event_grid(tenant)
            if grid is not None:
                found.append(grid)
            return found

        return self._cached_derived((tenant, "tenant"), build)

    def _event_grid(self, tenant: str) -> Subscription | None:
        if self.tenant_config is None:
            return None
        try:
            config = self.tenant_config(tenant) or {}
        except NotFound:
            return None
        grid = config.get("eventGrid")
        if not isinstance(grid, Mapping) or not isinstance(grid.get("endpoint"), str):
            return None
        key = grid.get("key")
        if key is None and isinstance(grid.get("keyEnv"), str):
            key = os.environ.get(grid["keyEnv"])
        try:
            types = check_types(grid.get("types"))
        except InvalidSubscription:
            types = None
        return Subscription(name=EVENTGRID_NAME, endpoint=grid["endpoint"], types=types, secret=key,
                            source=Source.TENANT, kind=Kind.EVENTGRID, status=SubscriptionStatus.ACTIVE)

    def _merge(self, spec: Subscription, rows: Mapping[str, Subscription]) -> Subscription:
        row = rows.get(spec.name)
        return spec if row is None else row.with_spec_of(spec)

    def targets(self, tenant: str, workflow_id: str) -> list[Subscription]:
        """Every subscription that may receive an event of a `workflow_id` instance, with its current state."""
        rows = self._stored(tenant)
        return self._targets(rows, self._of_definition(tenant, workflow_id), self._of_tenant(tenant))

    def cached_targets(self, tenant: str, workflow_id: str) -> list[Subscription] | None:
        """`targets` from the cache alone: None when a part of it is not cached or is stale (finding it would read
        a store, which a caller on the worker's path does not wait for)."""
        now = self.monotonic()
        with self._lock:
            parts = [self._rows.get(tenant), self._derived.get((tenant, "definition:" + workflow_id)),
                     self._derived.get((tenant, "tenant"))]
        if any(part is None or now - part[0] >= self.cache_seconds for part in parts):
            return None
        rows, of_definition, of_tenant = (part[1] for part in parts if part is not None)
        return self._targets(rows, of_definition, of_tenant)  # type: ignore[arg-type]

    def _targets(self, rows: Mapping[str, Subscription], of_definition: Sequence[Subscription],
                 of_tenant: Sequence[Subscription]) -> list[Subscription]:
        found = [s for s in rows.values() if s.source is Source.API]
        for spec in (*of_definition, *of_tenant):
            found.append(self._merge(spec, rows))
        return found

    def current(self, tenant: str, spec: Subscription) -> Subscription | None:
        """`spec` (as `targets` returned it) with its state as it is now; None when it was deleted meanwhile."""
        row = self._stored(tenant).get(spec.name)
        if spec.source is Source.API:
            return row if row is not None and row.source is Source.API else None
        return spec if row is None else row.with_spec_of(spec)

    def get(self, tenant: str, name: str, *, fresh: bool = False) -> Subscription:
        """The subscription named `name` with its current state. Raises SubscriptionNotFound."""
        if fresh:
            self.invalidate(tenant)
        rows = self._stored(tenant)
        for spec in self._of_tenant(tenant):
            if spec.name == name:
                return self._merge(spec, rows)
        row = rows.get(name)
        if row is not None and row.source is Source.DEFINITION and row.workflow_id is not None:
            current = [s for s in self._of_definition(tenant, row.workflow_id) if s.name == name]
            if current:
                return row.with_spec_of(current[0])
        if row is None:
            raise SubscriptionNotFound(tenant, name)
        return row

    def list(self, tenant: str) -> list[Subscription]:
        """API subscriptions, the tenant's static and Event Grid ones, and every definition subscription that has
        been used (a definition's subscriptions are known once an instance of it has had a commit)."""
        rows = self._stored(tenant)
        found = {s.name: s for s in rows.values()}
        for spec in self._of_tenant(tenant):
            found[spec.name] = self._merge(spec, rows)
        return sorted(found.values(), key=lambda s: s.name)

    def invalidate(self, tenant: str) -> None:
        with self._lock:
            self._rows.pop(tenant, None)
            for key in [key for key in self._derived if key[0] == tenant]:
                del self._derived[key]

    # -------------------------------------------------------------------------------------- writing

    def _updated(self, tenant: str, subscription: Subscription) -> None:
        with self._lock:
            cached = self._rows.get(tenant)
            if cached is not None:  # copy on write: readers may be iterating the cached rows
                self._rows[tenant] = (cached[0], {**cached[1], subscription.name: subscription})

    def save(self, tenant: str, subscription: Subscription) -> Subscription:
        now = self.timestamp()
        subscription = dataclasses.replace(subscription, created_at=subscription.created_at or now, updated_at=now)
        self.store.save(tenant, subscription)
        self._updated(tenant, subscription)
        return subscription

    def modify(self, tenant: str, subscription: Subscription, change: Change) -> Subscription:
        """Change the stored state of `subscription` atomically (stored first if it is a derived one not stored
        yet). A derived subscription keeps its spec from its source; an API one from the store."""
        now = self.timestamp()

        def apply(current: Subscription) -> Subscription:
            if current.source is not Source.API:
                current = current.with_spec_of(subscription)
            changed = change(current)
            return dataclasses.replace(changed, created_at=changed.created_at or now, updated_at=now)

        default = subscription if subscription.source is not Source.API else None
        changed = self.store.modify(tenant, subscription.name, apply, default=default)
        if changed is None:
            self.invalidate(tenant)
            raise SubscriptionNotFound(tenant, subscription.name)
        self._updated(tenant, changed)
        return changed

    def delete(self, tenant: str, name: str) -> None:
        existing = self.get(tenant, name)
        if existing.source is not Source.API:
            raise InvalidSubscription(name, [f"subscription {name!r} comes from the {existing.source} configuration; "
                                             "change it there (it can be paused and resumed here)"])
        self.store.delete(tenant, name)
        self.invalidate(tenant)
