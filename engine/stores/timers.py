"""The timer index port: firing messages kept until the command queue can take them.

A queue holds a delayed message for as long as its platform allows (Azure Storage: 7 days of visibility delay).
A timer due later is kept here, in its tenant's storage, and brought forward onto the queue by the timer function
once it is due within that limit (engine/service/timers.py). Only timers are indexed, never instances: bringing
them forward is one indexed query per tenant, whatever the number of instances.

Every adapter passes tests/contract/test_timer_index.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class IndexedTimer:
    """A message to put on the command queue at `due_at` (ISO 8601 UTC, `…Z`, fixed width: sorts as it reads)."""

    key: str  # what makes it unique in its tenant: a firing's trigger id
    instance_id: str
    due_at: str
    body: Mapping[str, Any]

    @property
    def id(self) -> str:
        """A storage id made of the key (ids from clients may hold characters a Cosmos id may not)."""
        return hashlib.sha256(f"{self.instance_id}\n{self.key}".encode()).hexdigest()


class TimerIndex(Protocol):
    def put(self, tenant: str, timer: IndexedTimer) -> None:
        """Keep `timer`; putting the same key again replaces it (idempotent)."""
        ...

    def due(self, tenant: str, *, until: str, limit: int = 500) -> list[IndexedTimer]:
        """Timers with `due_at` <= `until`, earliest first."""
        ...

    def remove(self, tenant: str, timer: IndexedTimer) -> None:
        """Forget `timer` (it is on the queue now). Removing one that is gone is no error."""
        ...


class MemoryTimerIndex:
    """The fake for unit tests, with the contract of the real ones."""

    def __init__(self) -> None:
        self._timers: dict[tuple[str, str], IndexedTimer] = {}
        self._lock = threading.Lock()

    def put(self, tenant: str, timer: IndexedTimer) -> None:
        with self._lock:
            self._timers[tenant, timer.id] = timer

    def due(self, tenant: str, *, until: str, limit: int = 500) -> list[IndexedTimer]:
        with self._lock:
            found = [t for (owner, _), t in self._timers.items() if owner == tenant and t.due_at <= until]
        return sorted(found, key=lambda t: t.due_at)[:limit]

    def remove(self, tenant: str, timer: IndexedTimer) -> None:
        with self._lock:
            self._timers.pop((tenant, timer.id), None)

    def close(self) -> None:
        """Nothing to release."""
