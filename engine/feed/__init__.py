"""The change feed: stored events as CloudEvents, the outbox that delivers them at least once, the webhook and
Event Grid publishers, subscriptions, and the pull feed.

Hosts build one `ChangeFeed` per process, pass `feed.on_commit` to the engine, `start()` it (the sweeper thread)
and `close()` it on shutdown. The API includes `engine.api.feed_routes.feed_router(feed, ...)`.
"""

from engine.feed.changefeed import ChangeFeed, FeedPage
from engine.feed.cloudevents import (
    ALL_TYPES,
    BATCH_CONTENT_TYPE,
    CloudEventMapper,
    commit_events,
    from_batch,
    parse_http,
    to_batch,
)
from engine.feed.eventgrid import EventGridPublisher
from engine.feed.outbox import Dispatcher
from engine.feed.sources import StaticSubscription, parse_static_subscriptions
from engine.feed.subscriptions import (
    InvalidSubscription,
    Subscription,
    SubscriptionNotFound,
    SubscriptionStatus,
    TooManySubscriptions,
)
from engine.feed.subscriptions_memory import MemorySubscriptionStore
from engine.feed.subscriptions_sqlite import SqliteSubscriptionStore
from engine.feed.sweeper import Sweeper, SweepReport
from engine.feed.webhook import (
    SIGNATURE_HEADER,
    DestinationRefused,
    RetryPolicy,
    WebhookPublisher,
    sign,
    verify_signature,
)

__all__ = [
    "ALL_TYPES", "BATCH_CONTENT_TYPE", "SIGNATURE_HEADER", "ChangeFeed", "CloudEventMapper", "DestinationRefused",
    "Dispatcher", "EventGridPublisher", "FeedPage", "InvalidSubscription", "MemorySubscriptionStore", "RetryPolicy",
    "SqliteSubscriptionStore", "StaticSubscription", "Subscription", "SubscriptionNotFound", "SubscriptionStatus",
    "SweepReport", "Sweeper", "TooManySubscriptions", "WebhookPublisher", "commit_events", "from_batch", "parse_http",
    "parse_static_subscriptions", "sign", "to_batch", "verify_signature",
]
