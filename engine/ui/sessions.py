"""Dashboard sessions, kept in the server's memory: the browser holds only a random session id.

The key an operator logged in with stays here (to check on every request that it still works: a rotated key or
a removed tenant ends the session) and never goes back to the browser. A session ends on logout, after
`idle_seconds` without a request, or `max_age_seconds` after login, whichever comes first. The store is bounded:
when full, the sessions least recently used are dropped (their operators log in again).

Sessions live in one process: a host that runs several processes behind one address needs sticky routing for
the dashboard (each process otherwise asks for a login of its own).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Session", "SessionStore"]


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

    @property
    def principal(self) -> str:
        return "admin" if self.admin else f"tenant {self.tenant!r}"

    def who(self) -> str:
        """How recoveries and terminations record who did them."""
        where = f"{self.principal} via dashboard"
        return f"{self.operator} ({where})" if self.operator else where

    def flash(self, level: str, text: str) -> None:
        self.flashes.append((level, text))
        del self.flashes[:-5]

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    def __init__(self, *, idle_seconds: float = 30 * 60, max_age_seconds: float = 12 * 3600,
                 limit: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.limit = limit
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, *, tenant: str, key: bytes, admin: bool, operator: str = "") -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), tenant, key, admin, operator, secrets.token_urlsafe(32),
                          now, now)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id (and it counts as used now), or None."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.created > self.max_age_seconds:
                del self._sessions[session_id]
                return None
            session.seen = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def end_tenant(self, tenant: str) -> None:
        with self._lock:
            for session_id in [s.id for s in self._sessions.values() if s.tenant == tenant]:
                del self._sessions[session_id]

    def __len__(self) -> int:
        return len(self._sessions)
