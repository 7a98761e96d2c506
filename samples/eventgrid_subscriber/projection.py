"""A per-instance projection of Waymark's change feed in Azure Table Storage: idempotent by event `id`, ordered by
the `sequence` extension.

Event Grid delivers at least once and in no particular order. Two rules make the projection right anyway:

- **Each event is recorded once, by its id.** Its row (`PartitionKey` = `{tenant}:{instance}`, `RowKey` =
  `event:{sequence:010d}`, the sequence being the second half of the id `{instance}:{sequence}`) is *created*; a
  second delivery finds the row there (409) and changes nothing.
- **The view follows the highest sequence seen, never a lower one.** A Waymark event's `data` is self-contained
  (the instance's state, status and context after it), so the view is the `data` of the highest sequence
  recorded; an older event arriving late is recorded in the history and leaves the view alone. The view is
  replaced with optimistic concurrency (`If-Match` its ETag): two deliveries racing each other re-read and retry.
  `contiguous` is how far the history has no gap, so a reader can tell "state as of event 7, 8 not seen yet".

Nothing here is specific to Functions: `function_app.py` hands each delivered event to `Projection.apply`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

TYPE_PREFIX = "io.waymark.workflow.instance."
VIEW = "view"
MAX_RACES = 20


@dataclass(frozen=True)
class WaymarkEvent:
    """The parts of a Waymark CloudEvent the projection reads."""

    id: str
    type: str
    tenant: str
    instance_id: str
    sequence: int
    data: dict[str, Any]

    @classmethod
    def from_cloudevent(cls, event: Any) -> WaymarkEvent:
        """From the `azure.functions.CloudEvent` an Event Grid trigger receives from a subscription with the
        CloudEvents 1.0 schema (the extensions `sequence` and `tenantid` are in its `extension_attrs`)."""
        event_type = str(event.type)
        if not event_type.startswith(TYPE_PREFIX):
            raise ValueError(f"not a Waymark event: {event_type!r}")
        data = event.get_json()
        if isinstance(data, str | bytes):
            data = json.loads(data)
        extensions = dict(getattr(event, "extension_attrs", {}) or {})
        instance_id = str(event.subject or data["instanceId"])
        sequence = int(extensions.get("sequence") or data["sequence"])
        if str(event.id) != f"{instance_id}:{sequence}":
            raise ValueError(f"event id {event.id!r} is not {instance_id}:{sequence}")
        tenant = str(extensions.get("tenantid") or str(event.source).split("/")[2])
        return cls(str(event.id), event_type, tenant, instance_id, sequence, dict(data))


class Projection:
    """The projection, one table. `apply` is safe to call concurrently and repeatedly for the same event."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str = "waymarkprojection") -> Projection:
        table = TableClient.from_connection_string(connection_string, table_name)
        with contextlib.suppress(ResourceExistsError):
            table.create_table()
        return cls(table)

    def apply(self, event: WaymarkEvent) -> bool:
        """Record the event and bring the view forward. False when this event id was recorded already."""
        partition = f"{event.tenant}:{event.instance_id}"
        try:
            self.table.create_entity({"PartitionKey": partition, "RowKey": f"event:{event.sequence:010d}",
                                      "EventId": event.id, "Type": event.type.removeprefix(TYPE_PREFIX),
                                      "Data": json.dumps(event.data)})
        except ResourceExistsError:
            return False  # a redelivery: already recorded, and the view already saw it
        self._advance(partition, event)
        return True

    def _advance(self, partition: str, event: WaymarkEvent) -> None:
        for _ in range(MAX_RACES):
            try:
                current = self.table.get_entity(partition, VIEW)
            except ResourceNotFoundError:
                try:
                    self.table.create_entity(self._view(partition, event, contiguous=self._contiguous(partition, 0)))
                    return
                except ResourceExistsError:
                    continue  # another delivery created it first: read it and compare
            known = int(current.get("Contiguous", 0))
            if int(current["Sequence"]) >= event.sequence:
                self._note_contiguous(partition, current, known)
                return
            try:
                self.table.update_entity(self._view(partition, event, contiguous=self._contiguous(partition, known)),
                                         mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)
                return
            except ResourceModifiedError:
                continue
        raise RuntimeError(f"the view of {partition} kept changing under {MAX_RACES} attempts; Event Grid retries")

    def _note_contiguous(self, partition: str, current: Any, known: int) -> None:
        """An older event filled a gap: only `Contiguous` moves (best effort; the next event corrects it)."""
        contiguous = self._contiguous(partition, known)
        if contiguous != known:
            entity = dict(current)
            entity["Contiguous"] = contiguous
            with contextlib.suppress(ResourceModifiedError):
                self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                         match_condition=MatchConditions.IfNotModified)

    def _contiguous(self, partition: str, known: int) -> int:
        """The highest n such that events 1..n are all recorded, knowing 1..`known` are (reads only past it)."""
        sequences = sorted(int(row["RowKey"].removeprefix("event:")) for row in self.table.query_entities(
            "PartitionKey eq @p and RowKey gt @after and RowKey lt 'event;'",
            parameters={"p": partition, "after": f"event:{known:010d}"}, select=["RowKey"]))
        contiguous = known
        for sequence in sequences:
            if sequence != contiguous + 1:
                break
            contiguous = sequence
        return contiguous

    @staticmethod
    def _view(partition: str, event: WaymarkEvent, *, contiguous: int) -> dict[str, Any]:
        data = event.data
        return {"PartitionKey": partition, "RowKey": VIEW, "Sequence": event.sequence,
                "Contiguous": max(contiguous, 0), "WorkflowId": data.get("workflowId"),
                "State": data.get("newState"), "Status": data.get("newStatus"),
                "Context": json.dumps(data.get("newContext")), "LastType": event.type.removeprefix(TYPE_PREFIX)}

    def view(self, tenant: str, instance_id: str) -> dict[str, Any] | None:
        """The instance as the projection knows it, or None before its first event."""
        try:
            row = self.table.get_entity(f"{tenant}:{instance_id}", VIEW)
        except ResourceNotFoundError:
            return None
        return {"tenant": tenant, "instanceId": instance_id, "workflowId": row["WorkflowId"], "state": row["State"],
                "status": row["Status"], "context": json.loads(row["Context"]), "sequence": row["Sequence"],
                "contiguous": row["Contiguous"], "lastType": row["LastType"]}

    def history(self, tenant: str, instance_id: str) -> list[tuple[int, str]]:
        """(sequence, short type) of every event recorded for the instance, in sequence order."""
        rows = self.table.query_entities("PartitionKey eq @p and RowKey ge 'event:' and RowKey lt 'event;'",
                                         parameters={"p": f"{tenant}:{instance_id}"}, select=["RowKey", "Type"])
        return sorted((int(row["RowKey"].removeprefix("event:")), row["Type"]) for row in rows)
