"""Entra tokens for outbound calls that authenticate with the app's managed identity.

An `http` action or condition, or a webhook subscription, with `auth: {"type": "managedIdentity", "audience": "…"}`
is sent with `Authorization: Bearer <token>`, a token for `{audience}/.default` from an azure-identity credential:
on Azure the app's own (`DefaultAzureCredential` for its user-assigned identity, `AZURE_CLIENT_ID`), under
`waymark serve` a `DefaultAzureCredential` (environment, managed identity, Azure CLI …), built on first use. So
calling an Entra-protected service needs no secret in a definition. Tokens are cached per audience until five
minutes before they expire; one thread fetches a missing token while the others for the same audience wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine.domain import WaymarkError

__all__ = ["ManagedIdentityTokens", "TokenUnavailable", "scope_of"]

REFRESH_BEFORE_SECONDS = 300.0


class TokenUnavailable(WaymarkError):
    """No token for the audience: `retryable` unless no credential is available on this host at all."""

    def __init__(self, audience: str, reason: str, *, retryable: bool) -> None:
        self.audience = audience
        self.retryable = retryable
        super().__init__(f"no managed identity token for audience {audience!r}: {reason}")


def scope_of(audience: str) -> str:
    """The scope asked for: `{audience}/.default` (an audience given as a scope already is kept)."""
    audience = audience.strip()
    return audience if audience.endswith("/.default") else f"{audience.rstrip('/')}/.default"


class ManagedIdentityTokens:
    """`credential`: an azure-identity credential, or a factory of one (called once, on first use)."""

    def __init__(self, credential: Any = None, *, factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._owned = credential is None and factory is None  # closed by `close` only when built here
        self._factory = factory
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def token(self, audience: str) -> str:
        cached = self._fresh(audience)
        if cached is not None:
            return cached
        with self._lock:
            lock = self._locks.setdefault(audience, threading.Lock())
        with lock:
            cached = self._fresh(audience)
            if cached is not None:
                return cached
            token, expires_on = self._fetch(audience)
            self._tokens[audience] = (token, expires_on)
            return token

    def _fresh(self, audience: str) -> str | None:
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] - REFRESH_BEFORE_SECONDS > self._clock():
            return cached[0]
        return None

    def _fetch(self, audience: str) -> tuple[str, float]:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        try:
            access = self.credential().get_token(scope_of(audience))
        except CredentialUnavailableError as e:
            raise TokenUnavailable(audience, "no managed identity is available on this host",
                                   retryable=False) from e
        except ClientAuthenticationError as e:
            raise TokenUnavailable(audience, "the identity endpoint refused or failed", retryable=True) from e
        return access.token, float(access.expires_on)

    def credential(self) -> Any:
        with self._lock:
            if self._credential is None:
                if self._factory is not None:
                    self._credential = self._factory()
                else:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
            return self._credential

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if self._owned and callable(close):
            close()
