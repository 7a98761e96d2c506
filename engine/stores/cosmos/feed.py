"""A Cosmos tenant's commits in feed order, and the outbox side: which are dispatched, marking them, the repair.

`read_feed` serves the pull feed (in position order, waiting at a young gap: positions.py), `undispatched` the
outbox's sweep. `mark_dispatched` indexes the commits' instances first (index.py), then marks them in the tenant's
outbox document (outbox.py); `repair_index` indexes what a crash or a failing delivery left behind, after `compact`
has folded the outbox's marks into its watermark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import exceptions

from engine.domain import Commit
from engine.stores.cosmos import outbox
from engine.stores.cosmos.containers import Silo, Silos
from engine.stores.cosmos.documents import Located, age_seconds, commit_of, located_of
from engine.stores.cosmos.index import index, patch_commit
from engine.stores.cosmos.outbox import OutboxState
from engine.stores.cosmos.remembered import Remembered


def outbox_state(silos: Silos, tenant: str, silo: Silo) -> OutboxState:
    return outbox.read_state(lambda sql, **options: silos.query(tenant, silo.events, sql, **options))


class CommitFeed:
    def __init__(self, silos: Silos, remembered: Remembered, gap_grace: float) -> None:
        self._silos = silos
        self._remembered = remembered
        self.gap_grace = gap_grace

    def read_feed(self, tenant: str, *, after: int, limit: int) -> list[Commit]:
        silo = self._silos.get(tenant)
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} * FROM c WHERE (c.kind = 'commit'"
                                 " OR c.kind = 'gap') AND c.position > @after ORDER BY c.position",
                                 after=max(after, 0))
        commits: list[Commit] = []
        previous = max(after, 0)
        state = outbox_state(self._silos, tenant, silo) if docs else None
        for doc in docs:
            position = int(doc["position"])
            if position != previous + 1 and age_seconds(doc.get("committedAt")) < self.gap_grace:
                break
            if doc["kind"] == "commit":
                commits.append(commit_of(doc, state))
            previous = position
        return commits

    def undispatched(self, tenant: str, *, committed_before: str | None, limit: int) -> list[Commit]:
        silo = self._silos.get(tenant)
        state = outbox_state(self._silos, tenant, silo)
        before = "" if committed_before is None else " AND c.at < @before"
        parameters = {} if committed_before is None else {"before": committed_before}
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} * FROM c WHERE c.kind = 'commit'"
                                 " AND c.dispatched = false AND c.position > @through"
                                 f" AND NOT ARRAY_CONTAINS(@marked, c.position){before} ORDER BY c.position",
                                 through=state.through, marked=state.marked_list, **parameters)
        commits = [commit_of(doc) for doc in docs]
        for doc, commit in zip(docs, commits, strict=True):
            self._remembered.remember_location(tenant, Located(int(doc["position"]), commit.instance_id, doc["id"],
                                                               commit.state))
        return commits

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        silo = self._silos.get(tenant)
        located, unknown = self._remembered.locations(tenant, sorted(set(positions)))
        if unknown:
            located += [located_of(doc) for doc in self._silos.query(
                tenant, silo.events, "SELECT c.id, c.instanceId, c.position, c.instance FROM c"
                " WHERE c.kind = 'commit' AND ARRAY_CONTAINS(@positions, c.position)", positions=unknown)]
        index(self._silos, tenant, silo, located)  # first: a commit marked dispatched is indexed
        with self._silos.translated(tenant):
            outbox.mark(silo.events, [entry.position for entry in located])
        self._remembered.forget_locations(tenant, [entry.position for entry in located])

    def repair_index(self, tenant: str, *, limit: int) -> int:
        silo = self._silos.get(tenant)
        state = self.compact(tenant)
        docs = self._silos.query(tenant, silo.events, f"SELECT TOP {int(limit)} c.id, c.instanceId, c.position,"
                                 " c.instance FROM c WHERE c.kind = 'commit' AND c.indexed = false"
                                 " AND c.position > @through AND NOT ARRAY_CONTAINS(@marked, c.position)"
                                 " ORDER BY c.position", through=state.through, marked=state.marked_list)
        located = [located_of(doc) for doc in docs]
        index(self._silos, tenant, silo, located)
        for entry in located:
            patch_commit(self._silos, tenant, silo, entry.doc_id, entry.instance_id,
                         [{"op": "set", "path": "/indexed", "value": True}])
        return len(located)

    def compact(self, tenant: str, *, attempts: int = 3) -> OutboxState:
        silo = self._silos.get(tenant)
        state = outbox_state(self._silos, tenant, silo)
        for _ in range(attempts):
            if not state.exists or not state.marked:
                return state
            slots = self._slots(tenant, silo, state)
            through = outbox.advance(state, list(slots.values()))
            flag = outbox.overflow(state, through, slots)
            for slot in flag:
                patch_commit(self._silos, tenant, silo, slot.doc_id, slot.instance_id,
                             [{"op": "set", "path": "/dispatched", "value": True},
                              {"op": "set", "path": "/indexed", "value": True}])
            if through == state.through and not flag:
                return state
            body = outbox.compacted(state, through, [slot.position for slot in flag])
            try:
                with self._silos.translated(tenant):
                    silo.events.replace_item(outbox.OUTBOX_ID, body, etag=state.etag,
                                             match_condition=MatchConditions.IfNotModified, no_response=True)
                return outbox.OutboxState(through, frozenset(body["marks"]["compacted"]))
            except exceptions.CosmosAccessConditionFailedError:
                state = outbox_state(self._silos, tenant, silo)
        return state

    def _slots(self, tenant: str, silo: Silo, state: OutboxState) -> dict[int, outbox.Slot]:
        """The positions from the watermark up to the newest mark, as the compaction weighs them."""
        docs = self._silos.query(
            tenant, silo.events, "SELECT c.id, c.instanceId, c.position, c.kind, c.dispatched, c.committedAt"
            " FROM c WHERE (c.kind = 'commit' OR c.kind = 'gap') AND c.position > @through"
            " AND c.position <= @top ORDER BY c.position", through=state.through, top=max(state.marked))
        return {slot.position: slot for slot in (self._slot(doc) for doc in docs)}

    def _slot(self, doc: Mapping[str, Any]) -> outbox.Slot:
        return outbox.Slot(int(doc["position"]), str(doc["kind"]), bool(doc.get("dispatched")),
                           age_seconds(doc.get("committedAt")) >= self.gap_grace, str(doc.get("id") or ""),
                           str(doc.get("instanceId") or ""))
