"""Dashboard sessions, sealed into the session cookie: no process keeps them, so any process of a host that runs
several behind one address (a scaled-out Function App) can serve any page.

A session is JSON sealed (engine/tenants/sealing.py: AES-256-GCM under a key derived from the server secret): the
browser holds it but can neither read it (it carries the key the operator logged in with, checked on every request
so that a rotated key or a removed tenant ends the session) nor change it. It is sealed again on every response, which
records the time it was last used and carries the one-time messages ("flashes") from an action to the page after
it.

A session ends on logout (its cookie is deleted, and this process refuses it from then on), after `idle_seconds`
without a request, or `max_age_seconds` after login, whichever comes first. Without a server secret (a store made
with no sealer) the key is random and sessions last as long as the process.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from engine.tenants.sealing import Sealer

__all__ = ["Session", "SessionStore"]

MAX_FLASHES = 5
MAX_FLASH_CHARS = 400  # a cookie holds about 4 KiB: flashes are short by construction, and cut here to be sure


@dataclass(eq=False)
class Session:
    id: str
    tenant: str
    key: bytes = field(repr=False)
    admin: bool
    operator: str  # the name the operator gave at login (may be empty), recorded with what they do
    csrf: str = field(repr=False)
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (level, text), shown once
    ended: bool = False  # logged out: its cookie is deleted rather than sealed again

    @property
    def principal(self) -> str:
        return "admin" if self.admin else f"tenant {self.tenant!r}"

    def who(self) -> str:
        """How recoveries and terminations record who did them."""
        where = f"{self.principal} via dashboard"
        return f"{self.operator} ({where})" if self.operator else where

    def flash(self, level: str, text: str) -> None:
        self.flashes.append((level, text[:MAX_FLASH_CHARS]))
        del self.flashes[:-MAX_FLASHES]

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    """Makes, seals and opens sessions. `sealer`: the same in every process of the host (`sealer_of` the tenant
    registry: a key derived from the server secret); None: a random key of this process. `clock` is wall-clock time
    in seconds (sessions cross processes, so a monotonic clock would not do)."""

    def __init__(self, *, sealer: Sealer | None = None, idle_seconds: float = 30 * 60,
                 max_age_seconds: float = 12 * 3600, clock: Callable[[], float] = time.time) -> None:
        self._sealer = sealer or Sealer(None, "dashboard sessions")
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._ended: dict[str, float] = {}  # session id → when it would have expired anyway
        self._lock = threading.Lock()

    def create(self, *, tenant: str, key: bytes, admin: bool, operator: str = "") -> Session:
        now = self.clock()
        return Session(secrets.token_urlsafe(32), tenant, key, admin, operator, secrets.token_urlsafe(32), now, now)

    def seal(self, session: Session) -> str:
        """The cookie value of `session` as it is now."""
        document = {"id": session.id, "tenant": session.tenant, "key": base64.b64encode(session.key).decode(),
                    "admin": session.admin, "operator": session.operator, "csrf": session.csrf,
                    "created": session.created, "seen": session.seen, "flashes": session.flashes}
        return self._sealer.seal_bytes(orjson.dumps(document))

    def get(self, token: str | None) -> Session | None:
        """The live session sealed in `token` (and it counts as used now), or None: absent, not sealed with this
        key, changed, ended, idle too long or too old."""
        opened = self._sealer.open_bytes(token) if token else None
        if opened is None:
            return None
        try:
            document = orjson.loads(opened)
            session = Session(str(document["id"]), str(document["tenant"]), base64.b64decode(document["key"]),
                              bool(document["admin"]), str(document["operator"]), str(document["csrf"]),
                              float(document["created"]), float(document["seen"]),
                              [(str(level), str(text)) for level, text in document["flashes"]])
        except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError):
            return None
        now = self.clock()
        if now - session.seen > self.idle_seconds or now - session.created > self.max_age_seconds:
            return None
        with self._lock:
            if session.id in self._ended:
                return None
        session.seen = now
        return session

    def end(self, session: Session) -> None:
        """Log out: this process refuses the session from now on, and its cookie is deleted."""
        session.ended = True
        now = self.clock()
        with self._lock:
            for ended, expires in list(self._ended.items()):
                if expires < now:
                    del self._ended[ended]
            self._ended[session.id] = session.created + self.max_age_seconds
