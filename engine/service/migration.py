"""Finding the instances a bulk migration applies to, and how many instances each version of a workflow holds.

Both page through the instance listing of one workflow (an indexed query by workflow id), bounded by `limit`:
the version of an instance is not an indexed field, so it is filtered here, as bulk recovery filters error types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from engine.domain import Instance, Status
from engine.stores.base import EventStore

__all__ = ["matching_instances", "versions_in_use"]

PAGE = 1000


def _listed(events: EventStore, tenant: str, workflow_id: str, status: Status, state: str | None) -> Iterator[Instance]:
    continuation = None
    while True:
        page = events.list_instances(tenant, status=str(status), workflow_id=workflow_id, state=state, limit=PAGE,
                                     continuation=continuation)
        yield from page.items
        continuation = page.continuation
        if continuation is None:
            return


def matching_instances(events: EventStore, tenant: str, workflow_id: str, *, statuses: tuple[Status, ...],
                       version: int | None = None, state: str | None = None, limit: int = 100) -> list[Instance]:
    """Up to `limit` instances of the workflow in one of `statuses` (and on `version`, in `state`): by id within
    each status, the statuses in the order given."""
    found: list[Instance] = []
    for status in statuses:
        for instance in _listed(events, tenant, workflow_id, status, state):
            if version is None or instance.workflow_version == version:
                found.append(instance)
                if len(found) >= limit:
                    return found
    return found


def versions_in_use(events: EventStore, tenant: str, workflow_id: str, *,
                    limit: int = 10_000) -> tuple[Counter[int], bool]:
    """How many Waiting or Faulted instances are on each version of the workflow (they could move to another one),
    counting at most `limit`; and whether the count stopped there."""
    counts: Counter[int] = Counter()
    seen = 0
    for status in (Status.WAITING, Status.FAULTED):
        for instance in _listed(events, tenant, workflow_id, status, None):
            counts[instance.workflow_version] += 1
            seen += 1
            if seen >= limit:
                return counts, True
    return counts, False
