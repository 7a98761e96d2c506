"""Tenants and their API keys: the registry port, an in-memory and a SQLite adapter, and key hashing.

A tenant key is random (`wmk_` + 32 random bytes, URL-safe), shown once when it is issued and never stored:
the registry keeps HMAC-SHA256(server secret, key). HMAC rather than a slow password hash because the keys
carry 256 bits of entropy (nothing to brute-force) and because a deterministic hash lets a key be found by
its hash in one indexed lookup. Without the server secret, a copy of `tenants.db` yields no usable key.

    WaymarkError
    ├── TenantAlreadyExists      create with an id that is taken
    └── InvalidTenantId          an id that is not `^[a-z0-9][a-z0-9-]{1,62}$`

A tenant's configuration (`TenantRecord.config`) says where its data is (see engine/stores/routing.py). A host
whose default store is not the embedded one gives its registry `defaults`: the configuration a new tenant gets
when `create` is given none naming a `store` (so `POST /tenants` on `waymark serve --store cosmos` records the
tenant's Cosmos database, and the record stays true if the host's default changes later).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from engine.domain.errors import StoreUnavailable, TenantNotFound, WaymarkError
from engine.domain.events import timestamp
from engine.domain.secrets import REDACTED
from engine.sealing import Sealer
from engine.stores._sqlite import DURABLE, Synchronous, checked_synchronous, durable, rollback

__all__ = [
    "DEFINITION_SECRETS", "SECRET_CONFIG_KEYS", "TENANT_ID_PATTERN", "TENANT_SECRETS", "ConfigSealing",
    "InvalidTenantId", "KeyHasher",
    "MemoryTenantRegistry", "SqliteTenantRegistry", "TenantAlreadyExists", "TenantRecord", "TenantRegistry",
    "check_tenant_id", "keep_config_secrets", "new_key", "read_or_create_secret", "replace_config_secrets",
]

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
KEY_PREFIX = "wmk_"


class TenantAlreadyExists(WaymarkError):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant!r} already exists")


class InvalidTenantId(WaymarkError):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant id {tenant!r} is not valid: 2 to 63 characters, lower-case letters, digits and "
                         "'-', starting with a letter or digit")


def check_tenant_id(tenant: str) -> str:
    if not isinstance(tenant, str) or not TENANT_ID_PATTERN.match(tenant):
        raise InvalidTenantId(str(tenant))
    return tenant


def new_key(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: str
    key_hash: str
    created_at: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_public(self) -> dict[str, Any]:
        """What the API may show about a tenant: never its key hash, and its configuration's secrets as "***"."""
        return {"id": self.id, "createdAt": self.created_at,
                "config": replace_config_secrets(self.config, lambda _: REDACTED)}


SECRET_CONFIG_KEYS: tuple[tuple[str, str], ...] = (("eventGrid", "key"),)
"""Where a tenant's configuration holds secrets (the Event Grid topic's access key): sealed at rest by the SQLite
and Cosmos registries (purpose TENANT_SECRETS), shown as "***"."""


def replace_config_secrets(config: Mapping[str, Any], replace: Callable[[str], str]) -> dict[str, Any]:
    """A deep copy of a tenant's configuration with each secret replaced by `replace(value)`."""
    copied = copy.deepcopy(dict(config))
    for parent, key in SECRET_CONFIG_KEYS:
        holder = copied.get(parent)
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            holder[key] = replace(holder[key])
    return copied


def keep_config_secrets(config: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """A new configuration whose "***" secrets are the current configuration's (as a GET showed them); a "***" with
    nothing to keep raises ValueError."""
    copied = copy.deepcopy(dict(config))
    for parent, key in SECRET_CONFIG_KEYS:
        holder = copied.get(parent)
        if isinstance(holder, dict) and holder.get(key) == REDACTED:
            before = current.get(parent)
            kept = before.get(key) if isinstance(before, Mapping) else None
            if not isinstance(kept, str) or kept == REDACTED:
                raise ValueError(f'{parent}.{key} is "{REDACTED}" but the tenant has no such secret to keep: send '
                                 "the value")
            holder[key] = kept
    return copied


class ConfigSealing:
    """What the SQLite and Cosmos registries share: the configuration's secrets sealed at rest."""

    hasher: KeyHasher

    def _sealed_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        sealer = self.hasher.sealer(TENANT_SECRETS)
        return replace_config_secrets(config, sealer.seal_text)

    def _opened_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        sealer = self.hasher.sealer(TENANT_SECRETS)
        return replace_config_secrets(config, sealer.open_text)


class KeyHasher:
    """HMAC-SHA256 of a key under the server secret, as hex. Deterministic, so a key is looked up by its hash."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if len(raw) < 16:
            raise ValueError("the server secret must be at least 16 bytes")
        self._secret = raw

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def matches(self, key: str, key_hash: str) -> bool:
        return hmac.compare_digest(self.hash(key), key_hash)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key of its own for `purpose` (e.g. sealing dashboard sessions), the same in every process that
        shares the server secret, and unrelated to the key hashes and to the keys of other purposes."""
        return hmac.new(self._secret, f"waymark derived key: {purpose}".encode(), hashlib.sha256).digest()

    def sealer(self, purpose: str) -> Sealer:
        """Seals values for `purpose` under a key derived from the server secret (engine/sealing.py)."""
        return Sealer(self.derive(purpose), purpose)


DEFINITION_SECRETS = "definition secrets"  # the sealing purpose of workflow definitions' secrets
TENANT_SECRETS = "tenant secrets"  # and of the secrets in a tenant's configuration


def sealer_of(registry: object, purpose: str) -> Sealer | None:
    """The sealer for `purpose` of a registry that hashes keys with the server secret, else None."""
    hasher = getattr(registry, "hasher", None)
    return hasher.sealer(purpose) if isinstance(hasher, KeyHasher) else None


def read_or_create_secret(path: Path, *, factory: Any = None) -> tuple[str, bool]:
    """The secret stored in `path`, or a new one written there once with mode 0600. Returns (secret, created).

    O_EXCL makes the creation race-free: of two processes starting at once, one writes and both read it.
    """
    make = factory or (lambda: secrets.token_urlsafe(48))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may be between open and write
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value, False
            threading.Event().wait(0.02)
        raise StoreUnavailable("secret file", f"{path} is empty") from None
    value = str(make())
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value, True


class TenantRegistry(Protocol):
    def create(self, tenant_id: str, *, key: str | None = None,
               config: Mapping[str, Any] | None = None) -> tuple[TenantRecord, str]:
        """Register a tenant; returns its record and its key (the only time the key is seen).
        Raises TenantAlreadyExists or InvalidTenantId."""
        ...

    def get(self, tenant_id: str) -> TenantRecord:
        """Raises TenantNotFound."""
        ...

    def authenticate(self, key: str) -> TenantRecord | None:
        """The tenant whose key this is, or None."""
        ...

    def rotate_key(self, tenant_id: str, *, key: str | None = None) -> str:
        """Replace the tenant's key (with `key`, or a new random one) and return it; the old key stops working."""
        ...

    def update_config(self, tenant_id: str, config: Mapping[str, Any]) -> TenantRecord:
        """Replace the tenant's configuration (e.g. with the outputs of infra/tenant.bicep); returns the record.
        Raises TenantNotFound."""
        ...

    def list(self) -> list[TenantRecord]:
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the registry cannot be reached."""
        ...


Defaults = Callable[[str], Mapping[str, Any]]


def _configured(tenant_id: str, config: Mapping[str, Any] | None, defaults: Defaults | None) -> dict[str, Any]:
    """A new tenant's configuration: as given, under the host's defaults when it names no store."""
    given = copy.deepcopy(dict(config or {}))
    if defaults is None or given.get("store"):
        return given
    return {**copy.deepcopy(dict(defaults(tenant_id))), **given}


class MemoryTenantRegistry:
    embedded = True  # see engine.stores.base.embedded

    def __init__(self, *, secret: str | bytes, defaults: Defaults | None = None) -> None:
        self.hasher = KeyHasher(secret)
        self.defaults = defaults
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantRecord] = {}

    def create(self, tenant_id: str, *, key: str | None = None,
               config: Mapping[str, Any] | None = None) -> tuple[TenantRecord, str]:
        check_tenant_id(tenant_id)
        key = key or new_key()
        record = TenantRecord(tenant_id, self.hasher.hash(key), timestamp(datetime.now(UTC)),
                              _configured(tenant_id, config, self.defaults))
        with self._lock:
            if tenant_id in self._tenants:
                raise TenantAlreadyExists(tenant_id)
            self._tenants[tenant_id] = record
        return record, key

    def get(self, tenant_id: str) -> TenantRecord:
        with self._lock:
            record = self._tenants.get(tenant_id)
        if record is None:
            raise TenantNotFound(tenant_id)
        return record

    def authenticate(self, key: str) -> TenantRecord | None:
        wanted = self.hasher.hash(key)
        with self._lock:
            for record in self._tenants.values():
                if hmac.compare_digest(record.key_hash, wanted):
                    return record
        return None

    def rotate_key(self, tenant_id: str, *, key: str | None = None) -> str:
        key = key or new_key()
        with self._lock:
            record = self._tenants.get(tenant_id)
            if record is None:
                raise TenantNotFound(tenant_id)
            self._tenants[tenant_id] = TenantRecord(record.id, self.hasher.hash(key), record.created_at,
                                                    record.config)
        return key

    def update_config(self, tenant_id: str, config: Mapping[str, Any]) -> TenantRecord:
        with self._lock:
            record = self._tenants.get(tenant_id)
            if record is None:
                raise TenantNotFound(tenant_id)
            updated = TenantRecord(record.id, record.key_hash, record.created_at,
                                   keep_config_secrets(config, record.config))
            self._tenants[tenant_id] = updated
        return updated

    def list(self) -> list[TenantRecord]:
        with self._lock:
            return sorted(self._tenants.values(), key=lambda record: record.id)

    def ping(self) -> None:
        return None


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
                              _configured(tenant_id, config, self.defaults))
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




