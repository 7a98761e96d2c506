"""The tenant registry's port: `TenantRegistry`, the `TenantRecord` it keeps, tenant ids and their errors, and the
secrets of a tenant's configuration.

    WaymarkError
    ├── TenantAlreadyExists      create with an id that is taken
    └── InvalidTenantId          an id that is not `^[a-z0-9][a-z0-9-]{1,62}$`

A tenant's configuration (`TenantRecord.config`) says where its data is (see engine/stores/routing.py). A host
whose default store is not the embedded one gives its registry `defaults`: the configuration a new tenant gets
when `create` is given none naming a `store` (so `POST /tenants` on `waymark serve --store cosmos` records the
tenant's Cosmos database, and the record stays true if the host's default changes later).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.domain.errors import TenantNotFound, WaymarkError
from engine.domain.secrets import REDACTED

__all__ = [
    "SECRET_CONFIG_KEYS", "TENANT_ID_PATTERN", "Defaults", "InvalidTenantId", "TenantAlreadyExists", "TenantRecord",
    "TenantRegistry", "check_tenant_id", "keep_config_secrets", "new_config", "replace_config_secrets",
]

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


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


def refuse_existing(registry: TenantRegistry, tenant_id: str) -> None:
    """Onboarding makes a new tenant: TenantAlreadyExists if the registry knows this id already."""
    try:
        registry.get(tenant_id)
    except TenantNotFound:
        return
    raise TenantAlreadyExists(tenant_id)


def new_config(tenant_id: str, config: Mapping[str, Any] | None, defaults: Defaults | None) -> dict[str, Any]:
    """A new tenant's configuration: as given, under the host's defaults when it names no store."""
    given = copy.deepcopy(dict(config or {}))
    if defaults is None or given.get("store"):
        return given
    return {**copy.deepcopy(dict(defaults(tenant_id))), **given}


