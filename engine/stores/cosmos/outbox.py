"""Which commits of a Cosmos tenant are dispatched: one document for the tenant, not a write per commit.

Flagging each commit document dispatched costs a request per commit, each in its own partition, and Cosmos has no
write across partitions. So the outbox's marks go to one document, `~feed:outbox` in the `~feed` partition:

    {"through": 1200, "marks": {"<key>": [1203, 1204], "<key>": [1206]}}

- `through`: every position up to it is dispatched (or will never hold a commit: a gap);
- `marks`: the positions above it dispatched so far, one entry per `mark` call, each added by one patch
  (`set /marks/<new key>`): markers in any number of processes never conflict, and one request marks a batch.

A commit is dispatched when its position is at most `through`, when a mark lists it, or when its own document says
so (documents flagged one by one: data from before, and commits the sweeper's repair flagged). The sweeper's pass
folds the marks into `through` (`compact`): it walks the positions above `through` in order and moves past each
that is marked, flagged, a gap marker, or missing while a later position is older than the gap grace (the rule of
`read_feed`), and stops at the first commit not dispatched; the document is replaced under its etag, so a
concurrent compaction or mark is never lost (a conflict is retried, or left to the next pass). Should a commit stay
undispatched for long (its delivery keeps failing), the marks above it would grow: past `MAX_MARKS`, the oldest are
flagged on their commit documents instead, one request each, so the document stays small.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.cosmos import exceptions

OUTBOX_ID = "~feed:outbox"
FEED_PARTITION = "~feed"
MAX_MARKS = 2000  # positions kept above `through` before the oldest are flagged on their commits instead


@dataclass(frozen=True, slots=True)
class OutboxState:
    through: int
    marked: frozenset[int]  # positions above `through` marked dispatched
    etag: str | None = None
    exists: bool = False

    def dispatched(self, position: int, flagged: bool = False) -> bool:
        return flagged or position <= self.through or position in self.marked

    @property
    def marked_list(self) -> list[int]:
        return sorted(self.marked)


Query = Callable[..., list[dict[str, Any]]]  # (sql, partition=…, **parameters) -> documents


def read_state(query: Query) -> OutboxState:
    """The tenant's outbox document (a query, not a point read: cosmosdb-server answers a point read of a missing
    document with a 500)."""
    docs = query("SELECT * FROM c WHERE c.instanceId = @feed AND c.id = @id", partition=FEED_PARTITION,
                 feed=FEED_PARTITION, id=OUTBOX_ID)
    if not docs:
        return OutboxState(0, frozenset())
    doc = docs[0]
    through = int(doc.get("through") or 0)
    marked = {int(p) for positions in (doc.get("marks") or {}).values() for p in positions if int(p) > through}
    return OutboxState(through, frozenset(marked), doc.get("_etag"), True)


def mark(events: Any, positions: Sequence[int]) -> None:
    """Add one mark of `positions` (a single patch; the document is created on the tenant's first mark). Driver
    errors are the caller's to translate."""
    if not positions:
        return
    operations = [{"op": "set", "path": f"/marks/{uuid.uuid4().hex}", "value": sorted(set(positions))}]
    try:
        events.patch_item(OUTBOX_ID, FEED_PARTITION, operations, no_response=True)
        return
    except exceptions.CosmosResourceNotFoundError:
        pass
    try:
        events.create_item({"id": OUTBOX_ID, "instanceId": FEED_PARTITION, "kind": "outbox", "triggerKey": "~outbox",
                            "through": 0, "marks": {uuid.uuid4().hex: sorted(set(positions))}}, no_response=True)
    except exceptions.CosmosResourceExistsError:  # created meanwhile by another marker
        events.patch_item(OUTBOX_ID, FEED_PARTITION, operations, no_response=True)


@dataclass(frozen=True, slots=True)
class Slot:
    """A position above `through`, as the compaction's range query found it."""

    position: int
    kind: str  # "commit" or "gap"
    flagged: bool  # the commit document says dispatched
    old: bool  # committed more than the gap grace ago
    doc_id: str = ""
    instance_id: str = ""


def advance(state: OutboxState, slots: Sequence[Slot]) -> int:
    """The new `through`: past every position that is marked, flagged or a gap marker, and past a missing one when
    the next position that holds something is older than the gap grace (as `read_feed` steps over it)."""
    found = {slot.position: slot for slot in slots}
    ordered = sorted(found)
    through = state.through
    for position in range(state.through + 1, max([*ordered, *state.marked], default=through) + 1):
        slot = found.get(position)
        if position in state.marked or (slot is not None and (slot.kind == "gap" or slot.flagged)):
            through = position
            continue
        if slot is None:
            after = next((found[p] for p in ordered if p > position), None)
            if after is not None and after.old:
                through = position  # a position that will never hold a commit
                continue
        break
    return through


def compacted(state: OutboxState, through: int, flagged: Sequence[int] = ()) -> dict[str, Any]:
    """The outbox document after a compaction to `through` (the marks above it kept, less those now flagged)."""
    kept = sorted(p for p in state.marked if p > through and p not in set(flagged))
    return {"id": OUTBOX_ID, "instanceId": FEED_PARTITION, "kind": "outbox", "triggerKey": "~outbox",
            "through": through, "marks": {"compacted": kept}}


def overflow(state: OutboxState, through: int, slots: Mapping[int, Slot]) -> list[Slot]:
    """The marked commits to flag on their own documents so that at most MAX_MARKS / 2 stay in the document."""
    kept = sorted(p for p in state.marked if p > through)
    if len(kept) <= MAX_MARKS:
        return []
    return [slots[p] for p in kept[: len(kept) - MAX_MARKS // 2] if p in slots and slots[p].kind == "commit"]
