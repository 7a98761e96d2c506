"""The dashboard's overview (`GET /ui/`): instances by workflow and status, the instances that could move to the
latest version of their workflow, the most recent faults and the most recently updated instances."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.domain import Instance, Status
from engine.ui.listing import MAX_SCANNED, definition_names, feed_end, recently_updated
from engine.ui.pages import STATUSES, Pages
from engine.ui.sessions import Session

__all__ = ["OverviewPage"]

RECENT_FAULTS = 10
RECENTLY_UPDATED = 10  # instances in the overview's "Recently updated"


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    id: str
    name: str | None
    counts: dict[str, int]
    total: int


@dataclass(frozen=True, slots=True)
class Movable:
    """Instances that could move to the latest version of their workflow (`waymark instances migrate-all`)."""

    workflow_id: str
    version: int
    count: int
    latest: int


@dataclass(slots=True)
class Tally:
    """What the overview counts over the tenant's instances (at most MAX_SCANNED of them)."""

    latest: dict[str, int]  # each workflow's latest version
    counts: dict[str, Counter[str]] = field(default_factory=dict)  # by workflow, by status
    movable: Counter[tuple[str, int]] = field(default_factory=Counter)  # Waiting or Faulted on an older version
    faults: list[Instance] = field(default_factory=list)
    scanned: int = 0
    complete: bool = True

    def add(self, instance: Instance) -> None:
        self.counts.setdefault(instance.workflow_id, Counter())[str(instance.status)] += 1
        if (instance.status in (Status.WAITING, Status.FAULTED)
                and instance.workflow_version < self.latest.get(instance.workflow_id, 0)):
            self.movable[instance.workflow_id, instance.workflow_version] += 1
        if instance.fault is not None and instance.status is Status.FAULTED:
            self.faults.append(instance)


class OverviewPage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.events = pages.engine.events
        self.catalog = pages.engine.catalog

    def tally(self, tenant: str, latest: dict[str, int]) -> Tally:
        tally = Tally(latest=latest)
        continuation = None
        while True:
            found = self.events.list_instances(tenant, limit=1000, continuation=continuation)
            for instance in found.items:
                tally.add(instance)
            tally.scanned += len(found.items)
            continuation = found.continuation
            if continuation is None:
                break
            if tally.scanned >= MAX_SCANNED:
                tally.complete = False
                break
        tally.faults.sort(key=lambda i: i.fault.at if i.fault else "", reverse=True)
        return tally

    def data(self, tenant: str) -> dict[str, Any]:
        latest = dict(self.catalog.list(tenant))
        names = definition_names(self.catalog, tenant)
        tally = self.tally(tenant, latest)
        counts = tally.counts
        rows = [WorkflowRow(workflow_id, names.get(workflow_id), dict(counts.get(workflow_id, Counter())),
                            sum(counts.get(workflow_id, Counter()).values()))
                for workflow_id in sorted(set(names) | set(counts))]
        totals = {status: sum(row.counts.get(status, 0) for row in rows) for status in STATUSES}
        moves = [Movable(workflow_id, version, count, tally.latest[workflow_id])
                 for (workflow_id, version), count in sorted(tally.movable.items())]
        recent = recently_updated(self.events, tenant, end=feed_end(self.events, tenant),
                                  limit=RECENTLY_UPDATED).items
        return {"rows": rows, "totals": totals, "total": tally.scanned, "complete": tally.complete,
                "faults": tally.faults[:RECENT_FAULTS], "fault_count": len(tally.faults), "names": names,
                "recent": recent, "moves": moves}

    async def page(self, request: Request, session: Session) -> Response:
        data = await self.pages.ctx.run(self.data, session.tenant)
        return self.pages.render(request, "overview.html", session=session, nav="overview", **data)
