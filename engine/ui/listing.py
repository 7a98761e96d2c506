"""The dashboard's instance lists: the most recently updated first, or by id in natural order, with an id search.

The event store lists instances by id in byte order (`claim-42` between `claim-4` and `claim-5`) and keeps no
index by time. Both orders here are built from what every store has, at a bounded cost per page:

- **Recently updated** reads the tenant's change feed backwards from its end, a window of positions at a time:
  the first commit met for an instance is its latest, so the instances come newest first. A page stops after
  `limit` instances, `max_commits` commits read or `max_loads` instances read, and says where the next one
  starts (`before`). On a later page an instance whose latest commit is newer than the page's start was listed
  (or filtered out) before: it is recognised by loading it (its version is past the commit's) and skipped.
- **By id** reads the store's listing (filters applied by the store) up to `max_scanned` instances, keeps those
  whose id contains the search text, and sorts them in natural order (`claim-4 < claim-5 < claim-42`). Past the
  bound it says so: the order is then that of the first `max_scanned` ids.

An id searched for exactly is always found (one read), whatever the bound.

Beside them: where the tenant's feed ends (`feed_end`, where reading backwards starts) and the names of its
workflows (the list's filter and the overview's rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.domain import Instance, NotFound, WaymarkError
from engine.service.definitions import DefinitionCatalog
from engine.stores.base import EventStore

__all__ = ["MAX_POSITION", "MAX_SCANNED", "IdPage", "RecentPage", "by_natural_id", "definition_names", "exactly",
           "feed_end", "natural_key", "recently_updated", "searched"]

WINDOW = 200  # feed positions read per step backwards
MAX_SCANNED = 20_000  # instances a page by id (and the overview) reads before it says "at least"
MAX_POSITION = 2**62
_RUNS = re.compile(r"(\d+)")

Matches = Callable[[Instance], bool]


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Orders `claim-4 < claim-5 < claim-42 < claim-100`: runs of digits compare as numbers, the rest as text
    (case-insensitively, then as written)."""
    key = []
    for run in _RUNS.split(text):
        if run.isdigit():
            key.append((0, int(run), run))
        elif run:
            key.append((1, 0, run.casefold()))
    return (*key, (-1, 0, text))  # a shorter id first (claim-4 < claim-4a); then as written


def searched(search: str) -> Matches:
    """An id contains the search text (case-insensitively); an empty search matches every instance."""
    wanted = search.casefold()
    return lambda instance: wanted in instance.id.casefold()


@dataclass(frozen=True, slots=True)
class RecentPage:
    items: list[Instance]
    before: int | None  # the position the next page starts at (reading down from it), None at the feed's start


def recently_updated(events: EventStore, tenant: str, *, end: int, before: int | None = None, limit: int = 25,
                     matches: Matches = lambda instance: True, max_commits: int = 5000, max_loads: int = 500,
                     window: int = WINDOW) -> RecentPage:
    """Instances newest update first, from feed position `before` (default: `end`, the feed's last) down."""
    position = end if before is None else min(before, end)
    seen: set[str] = set()
    items: list[Instance] = []
    read = loads = 0
    while position > 0 and read < max_commits:
        low = max(0, position - window)
        commits = [c for c in events.read_feed(tenant, after=low, limit=window)
                   if c.position is not None and c.position <= position]
        read += len(commits)
        for commit in reversed(commits):
            if commit.instance_id in seen:
                continue
            if before is not None and loads >= max_loads:
                assert commit.position is not None
                return RecentPage(items, commit.position)  # the next page starts with this commit
            seen.add(commit.instance_id)
            if before is not None:
                loads += 1
            current = commit.state if before is None else _latest(events, tenant, commit.state)
            if current is not None and matches(current):
                items.append(current)
                if len(items) == limit:
                    assert commit.position is not None
                    return RecentPage(items, commit.position - 1 if commit.position > 1 else None)
        position = low
    return RecentPage(items, position if position > 0 else None)


def _latest(events: EventStore, tenant: str, after_commit: Instance) -> Instance | None:
    """The instance as it is now when that commit is its latest, else None (a newer page listed it)."""
    try:
        current = events.load(tenant, after_commit.id)
    except NotFound:
        return None
    return current if current.version == after_commit.version else None


@dataclass(frozen=True, slots=True)
class IdPage:
    items: list[Instance]
    total: int  # matching instances found (within the bound)
    complete: bool  # False: more instances than the bound; the order is that of the ones read


def by_natural_id(events: EventStore, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                  state: str | None = None, search: str = "", offset: int = 0, limit: int = 25,
                  max_scanned: int = 20_000) -> IdPage:
    """Instances matching the filters and the search, in natural id order, from `offset`."""
    matches = searched(search)
    found: dict[str, Instance] = {}
    scanned, continuation = 0, None
    while True:
        page = events.list_instances(tenant, status=status, workflow_id=workflow_id, state=state, limit=1000,
                                     continuation=continuation)
        found.update((i.id, i) for i in page.items if matches(i))
        scanned += len(page.items)
        continuation = page.continuation
        if continuation is None or scanned >= max_scanned:
            break
    exact = exactly(events, tenant, search)
    if exact is not None and all(v is None or v == actual for v, actual in (
            (status, str(exact.status)), (workflow_id, exact.workflow_id), (state, exact.state))):
        found[exact.id] = exact
    ordered = sorted(found.values(), key=lambda instance: natural_key(instance.id))
    return IdPage(ordered[offset:offset + limit], len(ordered), continuation is None)


def exactly(events: EventStore, tenant: str, instance_id: str) -> Instance | None:
    """The instance with exactly this id, if there is one."""
    if not instance_id:
        return None
    try:
        return events.load(tenant, instance_id)
    except NotFound:
        return None


def feed_end(events: EventStore, tenant: str) -> int:
    """The tenant's last feed position, found in O(log n) reads of one commit (the store has no "tail")."""
    def beyond(position: int) -> bool:
        return bool(events.read_feed(tenant, after=position, limit=1))

    if not beyond(0):
        return 0
    low, high = 0, 1
    while beyond(high):
        low, high = high, high * 2
        if high > MAX_POSITION:
            return low
    while high - low > 1:
        middle = (low + high) // 2
        if beyond(middle):
            low = middle
        else:
            high = middle
    return high


def definition_names(catalog: DefinitionCatalog, tenant: str) -> dict[str, str | None]:
    """Each workflow of the tenant, and the display name of its latest version (None: it has none, or it cannot
    be read)."""
    names: dict[str, str | None] = {}
    for workflow_id, version in catalog.list(tenant):
        try:
            names[workflow_id] = catalog.get(tenant, workflow_id, version).display_name
        except WaymarkError:
            names[workflow_id] = None
    return names
