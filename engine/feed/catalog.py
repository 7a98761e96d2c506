"""`SubscriptionCatalog`: every subscription of a tenant, from all four sources (subscriptions.py tells them), with
its current state from the subscription store; what the dispatcher, the sweeper and the API read and change."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.domain import NotFound, WorkflowNotFound, timestamp
from engine.feed.sources import StaticSubscription, definition_subscriptions, event_grid_subscription
from engine.feed.subscriptions import (
    Change,
    InvalidSubscription,
    Source,
    Subscription,
    SubscriptionNotFound,
    SubscriptionStore,
)

__all__ = ["SubscriptionCatalog"]


class _Definitions(Protocol):
    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> Any:
        ...


class SubscriptionCatalog:
    """Every subscription of a tenant, from all four sources, with its current state.

    Reads are cached for `cache_seconds` (the dispatcher asks on every commit); writes made through the catalog
    refresh the cache at once, so in one process a change is seen immediately and across processes within
    `cache_seconds`.
    """

    def __init__(self, store: SubscriptionStore, *, definitions: _Definitions | None = None,
                 static: Sequence[StaticSubscription] = (),
                 tenant_config: Callable[[str], Mapping[str, Any]] | None = None, cache_seconds: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.definitions = definitions
        self.static = list(static)
        self.tenant_config = tenant_config
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.now = now
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[float, dict[str, Subscription]]] = {}
        self._derived: dict[tuple[str, str], tuple[float, list[Subscription]]] = {}

    def timestamp(self) -> str:
        return timestamp(self.now())

    # -------------------------------------------------------------------------------------- reading

    def _stored(self, tenant: str) -> dict[str, Subscription]:
        with self._lock:
            cached = self._rows.get(tenant)
        if cached is not None and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        rows = {s.name: s for s in self.store.list(tenant)}
        with self._lock:
            self._rows[tenant] = (self.monotonic(), rows)
        return rows

    def _cached_derived(self, key: tuple[str, str], build: Callable[[], list[Subscription]]) -> list[Subscription]:
        with self._lock:
            cached = self._derived.get(key)
        if cached is not None and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        built = build()
        with self._lock:
            self._derived[key] = (self.monotonic(), built)
        return built

    def _of_definition(self, tenant: str, workflow_id: str) -> list[Subscription]:
        def build() -> list[Subscription]:
            if self.definitions is None:
                return []
            try:
                definition = self.definitions.get(tenant, workflow_id)
            except WorkflowNotFound:
                return []
            return definition_subscriptions(workflow_id, getattr(definition, "event_subscriptions", ()))

        return self._cached_derived((tenant, "definition:" + workflow_id), build)

    def _of_tenant(self, tenant: str) -> list[Subscription]:
        def build() -> list[Subscription]:
            found = [s.subscription() for s in self.static if s.tenants is None or tenant in s.tenants]
            grid = self._event_grid(tenant)
            if grid is not None:
                found.append(grid)
            return found

        return self._cached_derived((tenant, "tenant"), build)

    def _event_grid(self, tenant: str) -> Subscription | None:
        if self.tenant_config is None:
            return None
        try:
            config = self.tenant_config(tenant) or {}
        except NotFound:
            return None
        return event_grid_subscription(config)

    def _merge(self, spec: Subscription, rows: Mapping[str, Subscription]) -> Subscription:
        row = rows.get(spec.name)
        return spec if row is None else row.with_spec_of(spec)

    def targets(self, tenant: str, workflow_id: str) -> list[Subscription]:
        """Every subscription that may receive an event of a `workflow_id` instance, with its current state."""
        rows = self._stored(tenant)
        return self._targets(rows, self._of_definition(tenant, workflow_id), self._of_tenant(tenant))

    def cached_targets(self, tenant: str, workflow_id: str) -> list[Subscription] | None:
        """`targets` from the cache alone: None when a part of it is not cached or is stale (finding it would read
        a store, which a caller on the worker's path does not wait for)."""
        now = self.monotonic()
        with self._lock:
            parts = [self._rows.get(tenant), self._derived.get((tenant, "definition:" + workflow_id)),
                     self._derived.get((tenant, "tenant"))]
        if any(part is None or now - part[0] >= self.cache_seconds for part in parts):
            return None
        rows, of_definition, of_tenant = (part[1] for part in parts if part is not None)
        return self._targets(rows, of_definition, of_tenant)  # type: ignore[arg-type]

    def _targets(self, rows: Mapping[str, Subscription], of_definition: Sequence[Subscription],
                 of_tenant: Sequence[Subscription]) -> list[Subscription]:
        found = [s for s in rows.values() if s.source is Source.API]
        for spec in (*of_definition, *of_tenant):
            found.append(self._merge(spec, rows))
        return found

    def current(self, tenant: str, spec: Subscription) -> Subscription | None:
        """`spec` (as `targets` returned it) with its state as it is now; None when it was deleted meanwhile."""
        row = self._stored(tenant).get(spec.name)
        if spec.source is Source.API:
            return row if row is not None and row.source is Source.API else None
        return spec if row is None else row.with_spec_of(spec)

    def get(self, tenant: str, name: str, *, fresh: bool = False) -> Subscription:
        """The subscription named `name` with its current state. Raises SubscriptionNotFound."""
        if fresh:
            self.invalidate(tenant)
        rows = self._stored(tenant)
        for spec in self._of_tenant(tenant):
            if spec.name == name:
                return self._merge(spec, rows)
        row = rows.get(name)
        if row is not None and row.source is Source.DEFINITION and row.workflow_id is not None:
            current = [s for s in self._of_definition(tenant, row.workflow_id) if s.name == name]
            if current:
                return row.with_spec_of(current[0])
        if row is None:
            raise SubscriptionNotFound(tenant, name)
        return row

    def list(self, tenant: str) -> list[Subscription]:
        """API subscriptions, the tenant's static and Event Grid ones, and every definition subscription that has
        been used (a definition's subscriptions are known once an instance of it has had a commit)."""
        rows = self._stored(tenant)
        found = {s.name: s for s in rows.values()}
        for spec in self._of_tenant(tenant):
            found[spec.name] = self._merge(spec, rows)
        return sorted(found.values(), key=lambda s: s.name)

    def invalidate(self, tenant: str) -> None:
        with self._lock:
            self._rows.pop(tenant, None)
            for key in [key for key in self._derived if key[0] == tenant]:
                del self._derived[key]

    # -------------------------------------------------------------------------------------- writing

    def _updated(self, tenant: str, subscription: Subscription) -> None:
        with self._lock:
            cached = self._rows.get(tenant)
            if cached is not None:  # copy on write: readers may be iterating the cached rows
                self._rows[tenant] = (cached[0], {**cached[1], subscription.name: subscription})

    def save(self, tenant: str, subscription: Subscription) -> Subscription:
        now = self.timestamp()
        subscription = dataclasses.replace(subscription, created_at=subscription.created_at or now, updated_at=now)
        self.store.save(tenant, subscription)
        self._updated(tenant, subscription)
        return subscription

    def modify(self, tenant: str, subscription: Subscription, change: Change) -> Subscription:
        """Change the stored state of `subscription` atomically (stored first if it is a derived one not stored
        yet). A derived subscription keeps its spec from its source; an API one from the store."""
        now = self.timestamp()

        def apply(current: Subscription) -> Subscription:
            if current.source is not Source.API:
                current = current.with_spec_of(subscription)
            changed = change(current)
            return dataclasses.replace(changed, created_at=changed.created_at or now, updated_at=now)

        default = subscription if subscription.source is not Source.API else None
        changed = self.store.modify(tenant, subscription.name, apply, default=default)
        if changed is None:
            self.invalidate(tenant)
            raise SubscriptionNotFound(tenant, subscription.name)
        self._updated(tenant, changed)
        return changed

    def delete(self, tenant: str, name: str) -> None:
        existing = self.get(tenant, name)
        if existing.source is not Source.API:
            raise InvalidSubscription(name, [f"subscription {name!r} comes from the {existing.source} configuration; "
                                             "change it there (it can be paused and resumed here)"])
        self.store.delete(tenant, name)
        self.invalidate(tenant)
