"""The subscription store in memory (tests, and `waymark serve` without a data directory)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from engine.feed.subscriptions import Change, Subscription

__all__ = ["MemorySubscriptionStore"]


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
