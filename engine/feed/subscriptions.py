"""Who receives the change feed: subscriptions, where they come from, their state, and the store that keeps it.

Subscriptions come from four places, and are all the same `Subscription` to the dispatcher:

    source       name                               spec (endpoint, types, mode, secret) from
    api          chosen by the client               the subscription store (PUT /tenants/{t}/subscriptions/{name})
    definition   definition:{workflowId}:{hash}     the latest version of the workflow's `eventSubscriptions`
    static       static:{name}                      the engine's configuration (a JSON list, e.g. an env var)
    tenant       eventgrid:topic                    the tenant's configuration (`eventGrid`: its topic endpoint)

Whatever the source, the *state* of a subscription (status, consecutive failures, last error, backlog) is kept in
the store under its name, so a definition's webhook that keeps failing is paused, visible and resumable like any.
A name with a ':' can never be chosen through the API, so derived names never collide with a client's.

Status: `pending` (registered, the endpoint has not consented to the abuse-protection handshake: it gets
nothing), `active`, `paused` (too many consecutive failures, or paused by hand: commits it should get are owed
from `backlogFrom` on and delivered after resume), `gone` (the endpoint answered 410: it gets nothing until
resumed).

Per-subscription delivery tracking: a commit that could not be delivered to every subscription stays
undispatched; the subscriptions it did reach are recorded (`record_deliveries`), so the sweeper's retry skips
them. Records are dropped once the commit is dispatched. A commit delivered to all at the first attempt writes
nothing here.

The store's adapters: subscriptions_memory.py, subscriptions_sqlite.py, subscriptions_cosmos.py. Where the derived
subscriptions come from: sources.py; all of them together, with their state: catalog.py (`SubscriptionCatalog`).

    WaymarkError
    ├── NotFound
    │   └── SubscriptionNotFound
    └── InvalidSubscription      a subscription request or configuration with problems (all listed)
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from engine.domain import NotFound, WaymarkError
from engine.feed.cloudevents import ALL_TYPES
from engine.tenants.sealing import Sealer

__all__ = [
    "EVENTGRID_NAME", "NAME_PATTERN", "Change", "InvalidSubscription", "Kind", "Mode", "Source", "Subscription",
    "SubscriptionNotFound", "SubscriptionStatus", "SubscriptionStore", "TooManySubscriptions", "check_types",
]

log = logging.getLogger("waymark.feed")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
EVENTGRID_NAME = "eventgrid:topic"


class Mode(StrEnum):
    STRUCTURED = "structured"
    BINARY = "binary"


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    GONE = "gone"


class Source(StrEnum):
    API = "api"
    DEFINITION = "definition"
    STATIC = "static"
    TENANT = "tenant"


class Kind(StrEnum):
    WEBHOOK = "webhook"
    EVENTGRID = "eventgrid"


class SubscriptionNotFound(NotFound):
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        super().__init__(f"subscription {name!r} does not exist in tenant {tenant!r}")


class InvalidSubscription(WaymarkError):
    def __init__(self, name: str | None, problems: Sequence[str]) -> None:
        self.name = name
        self.problems = list(problems)
        super().__init__(f"subscription {name!r} is invalid: {'; '.join(self.problems)}")


class TooManySubscriptions(WaymarkError):
    """A new API subscription past the tenant's limit (`max_subscriptions_per_tenant`)."""

    def __init__(self, tenant: str, name: str, limit: int) -> None:
        self.tenant = tenant
        self.name = name
        self.limit = limit
        super().__init__(f"tenant {tenant!r} has {limit} subscriptions, its limit: delete one before subscribing "
                         f"{name!r}")


def check_types(types: Iterable[str] | None) -> frozenset[str] | None:
    """A types filter (None: every type), or InvalidSubscription naming the unknown types."""
    if types is None:
        return None
    chosen = frozenset(types)
    unknown = sorted(chosen - ALL_TYPES)
    if unknown:
        raise InvalidSubscription(None, [f"unknown event type(s) {', '.join(unknown)}; known: "
                                         f"{', '.join(sorted(ALL_TYPES))}"])
    return chosen


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    endpoint: str
    types: frozenset[str] | None = None  # None: every event type
    secret: str | None = field(default=None, repr=False)  # webhook HMAC secret; Event Grid access key
    mode: Mode = Mode.STRUCTURED
    source: Source = Source.API
    kind: Kind = Kind.WEBHOOK
    workflow_id: str | None = None  # a definition's subscription sees only its workflow's events
    status: SubscriptionStatus = SubscriptionStatus.PENDING
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    backlog_from: int | None = None  # the lowest feed position owed (while paused, and until caught up)
    auth_audience: str | None = None  # sent with a token of the app's managed identity for this audience
    paused_at: str | None = None  # when it was last paused
    resume_at: str | None = None  # paused by failures: when it resumes by itself (engine/feed/pausing.py)
    pauses: int = 0  # pauses by failures in a row (each twice as long as the one before)
    created_at: str = ""
    updated_at: str = ""

    def wants(self, ce_type: str) -> bool:
        return self.types is None or ce_type in self.types

    def selects(self, workflow_id: str) -> bool:
        return self.workflow_id is None or self.workflow_id == workflow_id

    def same_spec(self, other: Subscription) -> bool:
        return (self.endpoint, self.types, self.secret, self.mode, self.kind, self.workflow_id,
                self.auth_audience) == (other.endpoint, other.types, other.secret, other.mode, other.kind,
                                        other.workflow_id, other.auth_audience)

    def with_spec_of(self, spec: Subscription) -> Subscription:
        """This state with `spec`'s endpoint, filter, secret and mode (a definition or config that changed)."""
        return dataclasses.replace(self, endpoint=spec.endpoint, types=spec.types, secret=spec.secret,
                                   mode=spec.mode, source=spec.source, kind=spec.kind, workflow_id=spec.workflow_id,
                                   auth_audience=spec.auth_audience)

    def to_public(self) -> dict[str, Any]:
        """What the API shows: never the secret."""
        return {
            "name": self.name, "endpoint": self.endpoint,
            "types": sorted(self.types) if self.types is not None else None,
            "mode": str(self.mode), "source": str(self.source), "kind": str(self.kind),
            "workflowId": self.workflow_id, "hasSecret": self.secret is not None,
            "auth": {"type": "managedIdentity", "audience": self.auth_audience} if self.auth_audience else None,
            "status": str(self.status), "consecutiveFailures": self.consecutive_failures,
            "lastError": self.last_error, "lastErrorAt": self.last_error_at, "backlogFrom": self.backlog_from,
            "pausedAt": self.paused_at, "resumeAt": self.resume_at, "pauses": self.pauses,
            "createdAt": self.created_at, "updatedAt": self.updated_at,
        }

    def to_record(self, sealer: Sealer | None = None) -> dict[str, Any]:
        """What the store keeps: with the secret, sealed when the store has a sealer (engine/tenants/sealing.py)."""
        record = self.to_public()
        del record["hasSecret"]
        record["secret"] = sealer.seal_text(self.secret) if sealer is not None and self.secret else self.secret
        return record

    @classmethod
    def from_record(cls, doc: Mapping[str, Any], sealer: Sealer | None = None) -> Subscription:
        """`to_record`'s inverse. A secret stored before sealing began opens as it is."""
        types = doc.get("types")
        secret = doc.get("secret")
        if sealer is not None and isinstance(secret, str):
            secret = sealer.open_text(secret)
        return cls(
            name=doc["name"], endpoint=doc["endpoint"], types=frozenset(types) if types is not None else None,
            secret=secret, mode=Mode(doc.get("mode", "structured")), source=Source(doc.get("source", "api")),
            kind=Kind(doc.get("kind", "webhook")), workflow_id=doc.get("workflowId"),
            status=SubscriptionStatus(doc.get("status", "pending")),
            consecutive_failures=int(doc.get("consecutiveFailures", 0)), last_error=doc.get("lastError"),
            last_error_at=doc.get("lastErrorAt"), backlog_from=doc.get("backlogFrom"),
            paused_at=doc.get("pausedAt"), resume_at=doc.get("resumeAt"), pauses=int(doc.get("pauses") or 0),
            created_at=doc.get("createdAt", ""), updated_at=doc.get("updatedAt", ""),
            auth_audience=(doc.get("auth") or {}).get("audience"),
        )


# ---------------------------------------------------------------------------------------------- the store port

Change = Callable[[Subscription], Subscription]


class SubscriptionStore(Protocol):
    def get(self, tenant: str, name: str) -> Subscription | None:
        ...

    def list(self, tenant: str) -> list[Subscription]:
        """Every stored subscription of the tenant, ordered by name."""
        ...

    def save(self, tenant: str, subscription: Subscription) -> None:
        """Insert or replace."""
        ...

    def delete(self, tenant: str, name: str) -> bool:
        """True when there was one. Its delivery records go with it."""
        ...

    def modify(self, tenant: str, name: str, change: Change, *,
               default: Subscription | None = None) -> Subscription | None:
        """Atomically replace the stored subscription with `change(stored)` and return it. When none is stored,
        `change(default)` is stored (None and nothing stored when `default` is None)."""
        ...

    def record_deliveries(self, tenant: str, position: int, names: Iterable[str]) -> None:
        ...

    def deliveries(self, tenant: str, position: int) -> set[str]:
        """Names of the subscriptions a commit is recorded as delivered to."""
        ...

    def forget_deliveries(self, tenant: str, positions: Sequence[int]) -> None:
        ...

    def close(self) -> None:
        ...
