"""Tenant keys and the server secret.

A tenant key is random (`wmk_` + 32 random bytes, URL-safe), shown once when it is issued and never stored:
the registry keeps HMAC-SHA256(server secret, key). HMAC rather than a slow password hash because the keys
carry 256 bits of entropy (nothing to brute-force) and because a deterministic hash lets a key be found by
its hash in one indexed lookup. Without the server secret, a copy of `tenants.db` yields no usable key.

The same secret derives the keys that seal values at rest (engine/tenants/sealing.py): the secrets of workflow
definitions and of tenants' configurations, the dashboard's sessions, the webhook secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.domain.errors import StoreUnavailable
from engine.tenants.base import replace_config_secrets
from engine.tenants.sealing import Sealer

__all__ = ["DEFINITION_SECRETS", "KEY_PREFIX", "TENANT_SECRETS", "ConfigSealing", "KeyHasher", "new_key",
           "read_or_create_secret", "sealer_of"]

KEY_PREFIX = "wmk_"


def new_key(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


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
        """Seals values for `purpose` under a key derived from the server secret (engine/tenants/sealing.py)."""
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
