"""The storage ports. Every adapter (memory, sqlite, cosmos) passes the one contract suite in tests/contract.

Adapters translate their driver's errors at the edge: a lost race becomes `ConcurrencyConflict`, a
trigger recorded twice `DuplicateTrigger`, an unreachable store `StoreUnavailable`. Callers never see
a driver exception.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.domain import Commit, ConcurrencyConflict, DuplicateTrigger, Event, Instance


@dataclass(frozen=True, slots=True)
class Page:
    """A page of instances and the continuation token of the next page (None on the last)."""

    items: list[Instance]
    continuation: str | None


_LOAD_FOLLOWS = threading.local()


class _LoadFollows:
    """(A class rather than a generator: it runs twice per trigger.)"""

    def __enter__(self) -> None:
        _LOAD_FOLLOWS.on = True

    def __exit__(self, *exc_info: object) -> None:
        _LOAD_FOLLOWS.on = False


_LOAD_FOLLOWS_BLOCK = _LoadFollows()


def load_follows() -> _LoadFollows:
    """Says that, on this thread, a `load` of the instance follows its `find_trigger` at once (the processor's
    find-then-decide). A store may then answer that load from what `find_trigger` just read (Cosmos: one request
    fewer); outside it, every load reads the store, so a reader never sees a head older than its own request."""
    return _LOAD_FOLLOWS_BLOCK


def load_expected() -> bool:
    return bool(getattr(_LOAD_FOLLOWS, "on", False))


def embedded(component: object, tenant: str) -> bool:
    """Whether the calls of a store, queue or registry for `tenant` stay in this process and its local files
    (SQLite, memory): cheap enough to make on the API's event loop. A component says so with an `embedded`
    attribute (True, or a function of the tenant); one that does not say so, or may cross the network (Cosmos,
    Azure Storage), is not embedded, and its calls are made on a worker thread."""
    says = getattr(component, "embedded", False)
    return bool(says(tenant) if callable(says) else says)


@dataclass(frozen=True, slots=True)
class PendingCommit:
    """A commit to append: its events, decided from `expected_version`, and the instance after them."""

    instance_id: str
    expected_version: int
    events: Sequence[Event]
    state: Instance


def append_many(store: EventStore, tenant: str, commits: Sequence[PendingCommit]) -> list[Commit | Exception]:
    """Group commit where the store offers it (`append_many`), one append after the other where it does not.

    Each commit is whole or absent on its own; one refused (ConcurrencyConflict, DuplicateTrigger) is answered in
    its place and the others go on — except the later commits of the same instance, which were decided on it
    and are refused too."""
    batch = getattr(store, "append_many", None)
    if batch is not None:
        result: list[Commit | Exception] = batch(tenant, commits)
        return result
    results: list[Commit | Exception] = []
    refused: set[str] = set()
    for pending in commits:
        if pending.instance_id in refused:  # decided on a refused commit of the batch: its basis never existed
            results.append(ConcurrencyConflict(tenant, pending.instance_id, pending.expected_version, None,
                                               detail="follows a refused commit of its batch"))
            continue
        try:
            results.append(store.append(tenant, pending.instance_id, pending.expected_version, pending.events,
                                        state=pending.state))
        except (ConcurrencyConflict, DuplicateTrigger) as e:
            results.append(e)
            refused.add(pending.instance_id)
    return results


class EventStore(Protocol):
    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        """Write one commit atomically: all of `events`, or nothing.

        `expected_version` is the version the caller decided from (0 for a new instance). If the stream is
        at another version, raise `ConcurrencyConflict` and write nothing. If the commit's trigger id is
        already recorded on this instance, raise `DuplicateTrigger` and write nothing. `state` is the
        instance after the events (the snapshot and index row). The commit is stored undispatched and
        gets the next position in the tenant's feed.
        """
        ...

    def load(self, tenant: str, instance_id: str) -> Instance:
        """The current instance, at a cost that does not grow with its history. Raises InstanceNotFound."""
        ...

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        """Events with sequence > `after`, in order. An unknown instance reads as []."""
        ...

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        """The commit a trigger id produced on this instance, or None if it is not recorded."""
        ...

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        """Instances matching every given filter, ordered by id, paged."""
        ...

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        """Ids of the instances whose interests contain any of `subjects`, ordered by id."""
        ...

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        """Commits with position > `after`, in position (commit) order."""
        ...

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        """Commits not yet marked dispatched (optionally only those whose events are older than the
        ISO timestamp `committed_before`), in position order."""
        ...

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        ...

    def ping(self, tenant: str) -> None:
        """Raise StoreUnavailable when the tenant's storage cannot be reached."""
        ...


class DefinitionStore(Protocol):
    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        """Store a new version of the workflow `document["id"]`; returns its version (1, 2, 3 …).
        Every version is kept: instances pin the version they were created with. With `expected_version`, only if
        that is the latest version (0: none yet), atomically; else `DefinitionChanged` and nothing is stored."""
        ...

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        """(version, document) of the given version, or of the latest. Raises WorkflowNotFound."""
        ...

    def list(self, tenant: str) -> list[tuple[str, int]]:
        """(workflow id, latest version) of every workflow of the tenant, ordered by id."""
        ...
