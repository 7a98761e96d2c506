"""Sealing: values encrypted and authenticated (AES-256-GCM, the `cryptography` package) under a key derived from
the server secret (`KeyHasher.derive`), so that every process of a host opens what another sealed, and nobody
without the secret can read or change it. Each use has its own purpose, authenticated with the value: a value
sealed for one purpose never opens for another.

Used for the dashboard's session cookies and for the webhook secrets the subscription stores keep.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_PREFIX", "SealedValueError", "Sealer"]

_NONCE_BYTES = 12
SEALED_PREFIX = "sealed:v1:"  # marks a sealed text among values stored before sealing began


class SealedValueError(ValueError):
    """A sealed value that does not open: sealed under another server secret, or changed."""


class Sealer:
    """`key`: 32 bytes (None: a random key of this process). `purpose`: what the values are for."""

    def __init__(self, key: bytes | None, purpose: str) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("a sealing key is 32 bytes")
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))
        self._purpose = f"waymark sealed: {purpose}".encode()

    def seal_bytes(self, data: bytes) -> str:
        """`data` sealed, as URL-safe base64 without padding (fit for a cookie)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, data, self._purpose)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open_bytes(self, token: str) -> bytes | None:
        """What `seal_bytes` sealed, or None for anything else (another key or purpose, changed, not base64)."""
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._purpose)
        except (ValueError, TypeError, InvalidTag, binascii.Error):
            return None

    def seal_text(self, text: str) -> str:
        return SEALED_PREFIX + self.seal_bytes(text.encode("utf-8", "surrogatepass"))

    def open_text(self, value: str) -> str:
        """The text `seal_text` sealed; a value without the prefix was stored before sealing and is returned as it
        is. Raises SealedValueError for a sealed value this key does not open."""
        if not value.startswith(SEALED_PREFIX):
            return value
        opened = self.open_bytes(value[len(SEALED_PREFIX):])
        if opened is None:
            raise SealedValueError("a stored secret was sealed under another server secret (WAYMARK_SECRET) or "
                                   "was changed: set it again")
        return opened.decode("utf-8", "surrogatepass")
