"""`ChangeFeed`, the change feed of an engine put together for hosts and the API: the dispatcher (outbox.py), the
sweeper (sweeper.py), the subscriptions (subscriptions.py) and the pull feed."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudevents.core.base import BaseCloudEvent

from engine.feed.catalog import SubscriptionCatalog
from engine.feed.cloudevents import CloudEventMapper, to_batch
from engine.feed.handshake import shake_hands
from engine.feed.outbox import Dispatcher, Publisher
from engine.feed.pausing import PAUSED_SIGNAL, ResumePolicy, needs_attention, resume, signal
from engine.feed.sources import StaticSubscription
from engine.feed.subscriptions import (
    NAME_PATTERN,
    InvalidSubscription,
    Mode,
    Subscription,
    SubscriptionStatus,
    SubscriptionStore,
    TooManySubscriptions,
    check_types,
)
from engine.feed.sweeper import Sweeper
from engine.feed.webhook import RetryPolicy, WebhookPublisher
from engine.outbound import ManagedIdentityTokens
from engine.schemas import DEFAULT_SCHEMA_BASE
from engine.stores.base import EventStore

__all__ = ["ChangeFeed", "FeedPage"]

ACTIVE, PAUSED, PENDING = SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.PENDING


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of the pull feed: CloudEvents in commit order and the position to continue after."""

    events: Sequence[BaseCloudEvent]
    next_position: int
    commits: int

    def body(self) -> bytes:
        return to_batch(self.events)


class ChangeFeed:
    """The change feed of an engine: what hosts wire (`on_commit`, `start`, `close`) and what the API calls."""

    def __init__(self, events: EventStore, subscriptions: SubscriptionStore, *, definitions: Any = None,
                 static: Sequence[StaticSubscription] = (),
                 tenant_config: Callable[[str], Mapping[str, Any]] | None = None,
                 tenants: Callable[[], Iterable[str]] = tuple, origin: str = "waymark",
                 allow_private_destinations: bool = False, webhook: WebhookPublisher | None = None,
                 webhook_timeout: float = 10.0, tokens: ManagedIdentityTokens | None = None,
                 eventgrid: Publisher | None = None, grace_seconds: float = 30.0,
                 pause_after: int = 5,
                 max_workers: int = 64, lane_concurrency: int = 16, tenant_concurrency: int = 24,
                 retry: RetryPolicy | None = None, cache_seconds: float = 2.0,
                 max_subscriptions: int | None = None,
                 before_mark: Callable[[str, Sequence[int]], None] | None = None,
                 resume_policy: ResumePolicy | None = None,
                 schema_base: str = DEFAULT_SCHEMA_BASE) -> None:
        self.events = events
        self.max_subscriptions = max_subscriptions  # API subscriptions per tenant (None: no limit)
        self._subscribing = threading.Lock()
        self.catalog = SubscriptionCatalog(subscriptions, definitions=definitions, static=static,
                                           tenant_config=tenant_config, cache_seconds=cache_seconds)
        self.webhook = webhook or WebhookPublisher(origin=origin, timeout=webhook_timeout, tokens=tokens,
                                                   allow_private_destinations=allow_private_destinations)
        self.mapper = CloudEventMapper(events, schema_base=schema_base)
        self.dispatcher = Dispatcher(events, self.catalog, webhook=self.webhook, eventgrid=eventgrid,
                                     mapper=self.mapper, max_workers=max_workers, pause_after=pause_after,
                                     lane_concurrency=lane_concurrency, tenant_concurrency=tenant_concurrency,
                                     retry=retry, before_mark=before_mark, resume_policy=resume_policy)
        self.sweeper = Sweeper(self.dispatcher, tenants, grace_seconds=grace_seconds)

    # -------------------------------------------------------------------------------------- hosting

    @property
    def on_commit(self) -> Dispatcher:
        """Pass this as the engine's `on_commit`."""
        return self.dispatcher

    def start(self, *, sweep_interval: float = 10.0) -> None:
        self.sweeper.start(sweep_interval)

    def close(self, timeout: float = 5.0) -> None:
        self.sweeper.stop()
        self.dispatcher.close(timeout)
        self.webhook.close()
        closer = getattr(self.dispatcher._eventgrid, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()
        self.catalog.store.close()

    # -------------------------------------------------------------------------------------- pull feed

    def read(self, tenant: str, *, after: int = 0, limit: int = 100) -> FeedPage:
        """Commits after feed position `after` (at most `limit` commits: a commit's events are never split)."""
        commits = self.events.read_feed(tenant, after=max(0, after), limit=limit)
        events = [event for group in self.mapper.page(tenant, commits) for event in group]
        following = commits[-1].position if commits and commits[-1].position is not None else max(0, after)
        return FeedPage(events, following, len(commits))

    # -------------------------------------------------------------------------------------- subscriptions

    def subscriptions(self, tenant: str) -> list[Subscription]:
        return self.catalog.list(tenant)

    def subscription(self, tenant: str, name: str) -> Subscription:
        return self.catalog.get(tenant, name, fresh=True)

    def subscribe(self, tenant: str, name: str, *, endpoint: str, types: Iterable[str] | None = None,
                  secret: str | None = None, mode: str = "structured",
                  auth_audience: str | None = None) -> tuple[Subscription, bool]:
        """Create or replace the API subscription `name`; (subscription, created). A new or changed endpoint, or
        one still pending, goes through the handshake: it is active only if it consents. Raises
        InvalidSubscription, DestinationRefused or TooManySubscriptions (nothing stored)."""
        if not NAME_PATTERN.match(name):
            raise InvalidSubscription(name, ["a subscription name is 1 to 63 letters, digits, '.', '_' or '-', "
                                             "starting with a letter or digit"])
        try:
            chosen_types = check_types(types)
            chosen_mode = Mode(mode)
        except InvalidSubscription as e:
            raise InvalidSubscription(name, e.problems) from None
        except ValueError:
            raise InvalidSubscription(name, [f"mode must be 'structured' or 'binary', not {mode!r}"]) from None
        self.webhook.check_destination(endpoint)
        spec = Subscription(name=name, endpoint=endpoint, types=chosen_types, secret=secret, mode=chosen_mode,
                            auth_audience=auth_audience)
        with self._subscribing:  # in this process, two creations cannot both take the last place
            existing = self.catalog.store.get(tenant, name)
            if existing is None and self.max_subscriptions is not None and (
                    len(self.catalog.store.list(tenant)) >= self.max_subscriptions):
                raise TooManySubscriptions(tenant, name, self.max_subscriptions)
            if existing is not None and existing.endpoint == endpoint and existing.status is not PENDING:
                return self.catalog.save(tenant, existing.with_spec_of(spec)), False
            base = spec if existing is None else dataclasses.replace(existing.with_spec_of(spec), status=PENDING,
                                                                     consecutive_failures=0)
            stored = self.catalog.save(tenant, base)
        return shake_hands(self.catalog, self.webhook, tenant, stored), existing is None

    def unsubscribe(self, tenant: str, name: str) -> None:
        self.catalog.delete(tenant, name)

    def pause(self, tenant: str, name: str) -> Subscription:
        """Paused by hand: it stays paused (no automatic resume) until `resume`."""
        subscription = self.catalog.get(tenant, name, fresh=True)
        at = self.catalog.timestamp()
        paused = self.catalog.modify(tenant, subscription, lambda s: dataclasses.replace(
            s, status=PAUSED, paused_at=at, resume_at=None, pauses=0) if s.status is ACTIVE else s)
        if paused.status is PAUSED and subscription.status is ACTIVE:
            signal(PAUSED_SIGNAL, tenant, paused, "by hand; it waits for a resume")
        return paused

    def resume(self, tenant: str, name: str) -> Subscription:
        """Back to active (a webhook shakes hands again first); then its backlog is delivered in the background."""
        subscription = self.catalog.get(tenant, name, fresh=True)
        return resume(self.catalog, self.webhook, tenant, subscription, automatic=False,
                      policy=self.dispatcher.resume_policy, catch_up=self.dispatcher.catch_up)

    def attention(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's subscriptions that are paused or gone (for /readyz and the dashboard's banner)."""
        return needs_attention(self.catalog.list(tenant))
