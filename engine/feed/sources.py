"""Where the subscriptions that are not the API's come from: the engine's configuration (`StaticSubscription`,
`parse_static_subscriptions`), a definition's `eventSubscriptions`, and the tenant's configuration (its Event Grid
topic). Each is a `Subscription` whose spec its source owns; the catalog (catalog.py) adds its stored state."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.feed.subscriptions import (
    EVENTGRID_NAME,
    NAME_PATTERN,
    InvalidSubscription,
    Kind,
    Mode,
    Source,
    Subscription,
    SubscriptionStatus,
    check_types,
)

__all__ = ["StaticSubscription", "definition_subscriptions", "event_grid_subscription", "parse_static_subscriptions"]

log = logging.getLogger("waymark.feed")


@dataclass(frozen=True, slots=True)
class StaticSubscription:
    """A webhook the engine's configuration subscribes, for every tenant or the listed ones."""

    name: str
    endpoint: str
    types: frozenset[str] | None = None
    secret: str | None = field(default=None, repr=False)
    mode: Mode = Mode.STRUCTURED
    tenants: frozenset[str] | None = None

    def subscription(self) -> Subscription:
        return Subscription(name=f"static:{self.name}", endpoint=self.endpoint, types=self.types, secret=self.secret,
                            mode=self.mode, source=Source.STATIC)


def parse_static_subscriptions(value: str | Sequence[Mapping[str, Any]] | None) -> list[StaticSubscription]:
    """Static subscriptions from configuration: a JSON list (e.g. the `WAYMARK_FEED_SUBSCRIPTIONS` variable) of
    `{"name", "endpoint", "types"?, "secret"?, "mode"?, "tenants"?}`. Every problem is listed at once."""
    if value is None or value == "":
        return []
    items = json.loads(value) if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidSubscription(None, ["static subscriptions must be a JSON list"])
    problems: list[str] = []
    result: list[StaticSubscription] = []
    for index, item in enumerate(items):
        where = f"[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where} must be an object")
            continue
        name, endpoint = item.get("name"), item.get("endpoint")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            problems.append(f"{where}.name must be letters, digits, '.', '_' or '-'")
            continue
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            problems.append(f"{where}.endpoint must be an absolute http(s) URL")
            continue
        try:
            types = check_types(item.get("types"))
            mode = Mode(item.get("mode", "structured"))
        except (InvalidSubscription, ValueError) as e:
            problems.append(f"{where}: {e}")
            continue
        tenants = item.get("tenants")
        result.append(StaticSubscription(name, endpoint, types, item.get("secret"), mode,
                                         frozenset(tenants) if tenants is not None else None))
    if problems:
        raise InvalidSubscription(None, problems)
    return result


def definition_subscriptions(workflow_id: str, items: Iterable[Mapping[str, Any]]) -> list[Subscription]:
    """A definition's subscriptions (its `eventSubscriptions`), named by a digest of their endpoint."""
    result = []
    for item in items:
        endpoint = item.get("endpoint")
        if not isinstance(endpoint, str):
            continue
        digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
        try:
            types = check_types(item.get("types"))
        except InvalidSubscription:
            log.warning("ignoring the types filter of %s's subscription to %s: %s", workflow_id, endpoint,
                        item.get("types"))
            types = None
        try:
            mode = Mode(item.get("mode", "structured"))
        except ValueError:
            mode = Mode.STRUCTURED
        secret = item.get("secret")
        result.append(Subscription(name=f"definition:{workflow_id}:{digest}", endpoint=endpoint, types=types,
                                   secret=secret if isinstance(secret, str) else None, mode=mode,
                                   source=Source.DEFINITION, workflow_id=workflow_id))
    return result


def event_grid_subscription(config: Mapping[str, Any]) -> Subscription | None:
    """The tenant's Event Grid topic as a subscription, when its configuration names one (`eventGrid`)."""
    grid = config.get("eventGrid")
    if not isinstance(grid, Mapping) or not isinstance(grid.get("endpoint"), str):
        return None
    key = grid.get("key")
    if key is None and isinstance(grid.get("keyEnv"), str):
        key = os.environ.get(grid["keyEnv"])
    try:
        types = check_types(grid.get("types"))
    except InvalidSubscription:
        types = None
    return Subscription(name=EVENTGRID_NAME, endpoint=grid["endpoint"], types=types, secret=key,
                        source=Source.TENANT, kind=Kind.EVENTGRID, status=SubscriptionStatus.ACTIVE)
