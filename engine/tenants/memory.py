"""The tenant registry in memory (tests, `memory_engine`)."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine.domain.errors import TenantNotFound
from engine.domain.events import timestamp
from engine.tenants.base import (
    Defaults,
    TenantAlreadyExists,
    TenantRecord,
    check_tenant_id,
    keep_config_secrets,
    new_config,
)
from engine.tenants.keys import KeyHasher, new_key

__all__ = ["MemoryTenantRegistry"]


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
                              new_config(tenant_id, config, self.defaults))
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
