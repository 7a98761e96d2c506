"""In-memory event and definition stores: the fast fake for unit tests. They pass the same contract suite as
the real adapters (tests/contract), so a test that passes here means the same against SQLite or Cosmos.

Each tenant has its own dictionaries, and one lock per store makes every call atomic, so the guarantees of the
ports (a commit is all or nothing, sequences are gapless, a trigger id is recorded once) hold across threads.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine.domain import (
    Commit,
    ConcurrencyConflict,
    DefinitionChanged,
    DuplicateTrigger,
    Event,
    Instance,
    InstanceNotFound,
    WorkflowNotFound,
)
from engine.stores.base import Page
from engine.stores.checks import (
    check_commit,
    check_limit,
    decode_continuation,
    encode_continuation,
    workflow_id_of,
)

__all__ = ["MemoryDefinitionStore", "MemoryEventStore"]


@dataclass(slots=True)
class _Stream:
    events: list[Event]
    state: Instance
    triggers: dict[str, Commit]


@dataclass(slots=True)
class _Tenant:
    streams: dict[str, _Stream] = field(default_factory=dict)
    feed: list[Commit] = field(default_factory=list)  # feed[position - 1], stored undispatched
    undispatched: dict[int, None] = field(default_factory=dict)  # positions, in position order
    interests: dict[str, set[str]] = field(default_factory=dict)  # subject -> instance ids


class MemoryEventStore:
    embedded = True  # see engine.stores.base.embedded

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, _Tenant] = {}

    def _tenant(self, tenant: str) -> _Tenant:
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants[tenant] = _Tenant()
        return found

    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        events = tuple(events)
        check_commit(instance_id, expected_version, events, state)
        trigger_id = events[0].trigger_id
        with self._lock:
            silo = self._tenant(tenant)
            stream = silo.streams.get(instance_id)
            if stream is not None and trigger_id is not None and trigger_id in stream.triggers:
                raise DuplicateTrigger(tenant, instance_id, trigger_id)
            version = stream.state.version if stream is not None else 0
            if version != expected_version:
                raise ConcurrencyConflict(tenant, instance_id, expected_version, version)
            position = len(silo.feed) + 1
            commit = Commit(instance_id, events, state, position=position)
            silo.feed.append(commit)
            silo.undispatched[position] = None
            old_interests: tuple[str, ...] = ()
            if stream is None:
                stream = silo.streams[instance_id] = _Stream(list(events), state, {})
            else:
                old_interests = stream.state.interests
                stream.events.extend(events)
                stream.state = state
            if trigger_id is not None:
                stream.triggers[trigger_id] = commit
            if old_interests != state.interests:
                for subject in old_interests:
                    silo.interests[subject].discard(instance_id)
                for subject in state.interests:
                    silo.interests.setdefault(subject, set()).add(instance_id)
            return commit

    def load(self, tenant: str, instance_id: str) -> Instance:
        with self._lock:
            stream = self._tenant(tenant).streams.get(instance_id)
            if stream is None:
                raise InstanceNotFound(tenant, instance_id)
            return stream.state

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        with self._lock:
            stream = self._tenant(tenant).streams.get(instance_id)
            if stream is None:
                return []
            # events[i].sequence == i + 1: the stream is gapless.
            start = max(after, 0)
            stop = None if limit is None else start + max(limit, 0)
            return stream.events[start:stop]

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        with self._lock:
            silo = self._tenant(tenant)
            stream = silo.streams.get(instance_id)
            if stream is None:
                return None
            commit = stream.triggers.get(trigger_id)
            return None if commit is None else self._current(silo, commit)

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        check_limit(limit)
        after = decode_continuation(continuation)
        with self._lock:
            matching = sorted(
                (stream.state for id_, stream in self._tenant(tenant).streams.items()
                 if (after is None or id_ > after)
                 and (status is None or stream.state.status == status)
                 and (workflow_id is None or stream.state.workflow_id == workflow_id)
                 and (state is None or stream.state.state == state)),
                key=lambda instance: instance.id,
            )
        items = matching[:limit]
        more = len(matching) > limit
        return Page(items, encode_continuation(items[-1].id) if more else None)

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        with self._lock:
            index = self._tenant(tenant).interests
            found: set[str] = set()
            for subject in subjects:
                found |= index.get(subject, set())
        return sorted(found)

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        with self._lock:
            silo = self._tenant(tenant)
            start = max(after, 0)
            return [self._current(silo, commit) for commit in silo.feed[start:start + max(limit, 0)]]

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        with self._lock:
            silo = self._tenant(tenant)
            found: list[Commit] = []
            for position in silo.undispatched:
                if len(found) >= limit:
                    break
                commit = silo.feed[position - 1]
                if committed_before is None or commit.events[0].at < committed_before:
                    found.append(commit)
            return found

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        with self._lock:
            undispatched = self._tenant(tenant).undispatched
            for position in positions:
                undispatched.pop(position, None)

    def ping(self, tenant: str) -> None:
        return None

    @staticmethod
    def _current(silo: _Tenant, commit: Commit) -> Commit:
        if commit.position in silo.undispatched:
            return commit
        return replace(commit, dispatched=True)


class MemoryDefinitionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        workflow_id = workflow_id_of(document)
        stored = copy.deepcopy(dict(document))  # the caller may go on changing its dict
        with self._lock:
            versions = self._tenants.setdefault(tenant, {}).setdefault(workflow_id, [])
            if expected_version is not None and expected_version != len(versions):
                raise DefinitionChanged(tenant, workflow_id, expected_version, len(versions))
            versions.append(stored)
            return len(versions)

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            versions = self._tenants.get(tenant, {}).get(workflow_id)
            if not versions:
                raise WorkflowNotFound(tenant, workflow_id, version)
            if version is None:
                found = len(versions)
            elif 1 <= version <= len(versions):
                found = version
            else:
                raise WorkflowNotFound(tenant, workflow_id, version)
            return found, copy.deepcopy(versions[found - 1])

    def list(self, tenant: str) -> list[tuple[str, int]]:
        with self._lock:
            workflows = self._tenants.get(tenant, {})
            return sorted((workflow_id, len(versions)) for workflow_id, versions in workflows.items())
