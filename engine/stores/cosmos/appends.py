"""Commits on Cosmos: one document created per commit, and what a refused create means.

A commit is one document, *created* (never upserted): its id is derived from its first sequence, so two writers
deciding from the same version race for the same id and the loser gets a 409, which is `ConcurrencyConflict`. Its
`triggerKey` (`t:{trigger id}`, or `s:{sequence}` for an administrative commit) is a unique key of the container,
and Cosmos enforces unique keys per logical partition, i.e. per instance: a trigger id recorded twice on an instance
is a 409 too, in the same single-document write, so idempotency holds without a race window. A 409 is told apart
(trigger recorded → `DuplicateTrigger`, else `ConcurrencyConflict`) by one query, only on that path. Transactional
batches are not used (cosmosdb-server's are not atomic).

A create of `{instanceId}:{n+1}` only proves that no commit starts at n+1; it proves the stream is *at* n only if
the stream is known to have reached n. So an append checks `expected_version` against the head this store last read
or wrote (or reads the head: one query) before creating.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import exceptions

from engine.domain import Commit, ConcurrencyConflict, DuplicateTrigger, Event, StoreUnavailable, TenantNotFound
from engine.drivers.cosmos import describe
from engine.stores.base import PendingCommit
from engine.stores.cosmos.containers import STORE, Silo, Silos
from engine.stores.cosmos.documents import Located, commit_id, encode, now, trigger_key
from engine.stores.cosmos.positions import CREATE_TIMEOUT_SECONDS, FeedPositions
from engine.stores.cosmos.reads import query_head, trigger_doc
from engine.stores.cosmos.remembered import Remembered


class Appender:
    def __init__(self, silos: Silos, remembered: Remembered, positions: FeedPositions) -> None:
        self._silos = silos
        self._remembered = remembered
        self._positions = positions

    def append(self, tenant: str, pending: PendingCommit) -> Commit:
        silo = self._silos.get(tenant)
        ((position, taken_at),) = self._positions.take(tenant, silo, 1)
        return self._create(tenant, silo, pending, position, taken_at)

    def append_many(self, tenant: str, pending: Sequence[PendingCommit]) -> list[Commit | Exception]:
        silo = self._silos.get(tenant)
        positions = self._positions.take(tenant, silo, len(pending))
        results: list[Commit | Exception] = []
        refused: set[str] = set()
        for index, (commit, (position, taken_at)) in enumerate(zip(pending, positions, strict=True)):
            if commit.instance_id in refused:
                self._positions.abandon(silo, [position])
                results.append(ConcurrencyConflict(tenant, commit.instance_id, commit.expected_version, None,
                                                   detail="follows a refused commit of its batch"))
                continue
            try:
                results.append(self._create(tenant, silo, commit, position, taken_at, spare=False))
            except (ConcurrencyConflict, DuplicateTrigger) as e:
                refused.add(commit.instance_id)
                results.append(e)
            except BaseException:
                self._positions.abandon(silo, [p for p, _ in positions[index + 1:]])
                raise
        return results

    def _create(self, tenant: str, silo: Silo, pending: PendingCommit, position: int, taken_at: float, *,
                spare: bool = True) -> Commit:
        """Create the commit's document at `position` (see the module docstring). The position of a commit refused
        for its version is kept for the caller's retry (`spare`), or marked as a gap at once (in a batch, where later
        positions are used already: a reader of the feed must not wait at it)."""

        def release() -> None:
            if spare:
                self._positions.give_back(tenant, position, taken_at)
            else:
                self._positions.abandon(silo, [position])

        events = tuple(pending.events)
        self._check_head(tenant, silo, pending, events[0].trigger_id, release)
        doc = _commit_doc(pending, events, position)
        self._create_doc(tenant, silo, pending, doc, release)
        commit = Commit(pending.instance_id, events, pending.state, position=position)
        self._remembered.remember_head((tenant, pending.instance_id), pending.state)
        self._remembered.remember_location(tenant, Located(position, pending.instance_id, doc["id"], pending.state))
        if events[0].trigger_id is not None:
            self._remembered.remember_recorded(tenant, commit)
        return commit

    def _check_head(self, tenant: str, silo: Silo, pending: PendingCommit, trigger_id: str | None,
                    release: Callable[[], None]) -> None:
        """Creating `{id}:{n+1}` proves the stream is at n only if it has reached n: read the head unless this
        store knows it is there."""
        instance_id, expected_version = pending.instance_id, pending.expected_version
        if expected_version <= 0 or self._remembered.version((tenant, instance_id)) == expected_version:
            return
        try:
            current = query_head(self._silos, self._remembered, tenant, silo, instance_id)
        except BaseException:
            release()
            raise
        version = current.version if current is not None else 0
        if version != expected_version:
            release()
            raise self._refusal(tenant, silo, instance_id, expected_version, trigger_id, version)

    def _create_doc(self, tenant: str, silo: Silo, pending: PendingCommit, doc: dict[str, Any],
                    release: Callable[[], None]) -> None:
        """The create itself, its driver errors translated: a 409 is a refusal, an unknown outcome a lost position."""
        instance_id = pending.instance_id
        try:
            silo.events.create_item(doc, no_response=True, timeout=CREATE_TIMEOUT_SECONDS)
        except exceptions.CosmosResourceExistsError as e:
            # Nothing was written. After a lost race the caller decides again and appends at once: the position is
            # kept for that. A recorded trigger is not appended again: the position is marked as a gap at once.
            self._remembered.drop_head((tenant, instance_id))
            refusal = self._refusal(tenant, silo, instance_id, pending.expected_version, doc["triggerId"], None)
            if isinstance(refusal, DuplicateTrigger):
                self._positions.abandon(silo, [doc["position"]])
            else:
                release()
            raise refusal from e
        except exceptions.CosmosResourceNotFoundError as e:
            raise TenantNotFound(tenant) from e
        except AzureError as e:  # the outcome is unknown: the position is never used again (a gap)
            self._remembered.drop_head((tenant, instance_id))
            raise StoreUnavailable(STORE, f"tenant {tenant!r}, instance {instance_id!r}: {describe(e)}") from e

    def _refusal(self, tenant: str, silo: Silo, instance_id: str, expected_version: int, trigger_id: str | None,
                 actual: int | None) -> Exception:
        """Why a commit was not written: its trigger is recorded already (whatever the version), or the stream
        is at another version."""
        if trigger_id is not None and trigger_doc(self._silos, tenant, silo, instance_id, trigger_id) is not None:
            return DuplicateTrigger(tenant, instance_id, trigger_id)
        return ConcurrencyConflict(tenant, instance_id, expected_version, actual)


def _commit_doc(pending: PendingCommit, events: tuple[Event, ...], position: int) -> dict[str, Any]:
    """The document of a commit: created once, its id and trigger key unique in the instance's partition."""
    trigger_id = events[0].trigger_id
    return {
        "id": commit_id(pending.instance_id, pending.expected_version + 1),
        "kind": "commit",
        "instanceId": pending.instance_id,
        "firstSequence": events[0].sequence,
        "lastSequence": events[-1].sequence,
        "triggerId": trigger_id,
        "triggerKey": trigger_key(trigger_id, events[0].sequence),
        "position": position,
        "dispatched": False,
        "indexed": False,
        "at": events[0].at,
        "committedAt": now(),
        "workflowId": pending.state.workflow_id,
        "events": encode([event.to_dict() for event in events]),
        "instance": encode(pending.state.to_dict()),
    }
