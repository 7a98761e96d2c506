"""Expense claims per state, from CloudEvents delivered at least once and in any order.

Waymark promises each event at least once and in no particular order. Two facts make a subscriber correct anyway:

- `id` (`{instanceId}:{sequence}`) is the same every time an event is delivered: a second copy changes nothing;
- `sequence` grows by one with every event of an instance, and each event's `data` carries the instance's new
  state: so the event with the highest sequence seen says where the instance is *now*, whatever arrived before
  or after it.

So per instance we keep only (highest sequence, its state, its status), and the counts are a group-by of that
table. An older event arriving late is recognised (lower sequence) and ignored; a duplicate too.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["ClaimCounts", "Latest"]

TYPE_PREFIX = "io.waymark.workflow.instance."


@dataclass(frozen=True, slots=True)
class Latest:
    sequence: int
    state: str
    status: str


class ClaimCounts:
    def __init__(self, workflow_id: str = "expense-claim", *, remember_ids: int = 100_000) -> None:
        self.workflow_id = workflow_id
        self.remember_ids = remember_ids
        self._lock = threading.Lock()
        self._latest: dict[str, Latest] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent ids, to tell duplicates from late arrivals
        self.applied = self.duplicates = self.stale = self.ignored = 0

    def apply(self, event: Any) -> bool:
        """Take one CloudEvent (any object with the SDK's getters); True if it changed what we know."""
        if not str(event.get_type()).startswith(TYPE_PREFIX):
            self.ignored += 1
            return False
        data = event.get_data() or {}
        if data.get("workflowId") != self.workflow_id:
            self.ignored += 1
            return False
        event_id = event.get_id()
        # In binary mode extension attributes arrive as header strings; data repeats the sequence anyway.
        sequence = int(event.get_extension("sequence") or data["sequence"])
        instance_id = event.get_subject() or data["instanceId"]
        with self._lock:
            if event_id in self._seen:
                self.duplicates += 1
                return False
            self._seen[event_id] = None
            if len(self._seen) > self.remember_ids:
                self._seen.popitem(last=False)
            known = self._latest.get(instance_id)
            if known is not None and known.sequence >= sequence:
                self.stale += 1  # older than what we know (or a duplicate we had forgotten)
                return False
            self._latest[instance_id] = Latest(sequence, data["newState"], data["newStatus"])
            self.applied += 1
            return True

    def by_state(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(latest.state for latest in self._latest.values()))

    def by_status(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(latest.status for latest in self._latest.values()))

    def snapshot(self) -> dict[str, Any]:
        return {"workflowId": self.workflow_id, "claims": len(self._latest), "byState": self.by_state(),
                "byStatus": self.by_status(), "received": {"applied": self.applied, "duplicates": self.duplicates,
                                                           "stale": self.stale, "ignored": self.ignored}}
