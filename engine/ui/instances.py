"""The dashboard's instance list (`GET /ui/instances`): filters (workflow, state, status, id search), pages of 25,
the most recently updated first or by id in natural order (listing.py reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from engine.domain import WaymarkError
from engine.ui.listing import (
    MAX_SCANNED,
    by_natural_id,
    definition_names,
    exactly,
    feed_end,
    recently_updated,
    searched,
)
from engine.ui.pages import ID, STATUSES, Pages
from engine.ui.sessions import Session

__all__ = ["InstanceList", "ListQuery"]

PAGE_SIZE = 25
MAX_SEARCH = 128
SORTS = ("updated", "id")


@dataclass(frozen=True, slots=True)
class ListQuery:
    """What the instance list was asked for: filters, an id search, the order, and where the page starts."""

    workflow: str | None = None
    state: str | None = None
    status: str | None = None
    search: str = ""
    sort: str = "updated"
    page: int = 0  # sort=id: the page number
    before: int | None = None  # sort=updated: the feed position the page starts at, reading down

    @staticmethod
    def of(params: Any) -> tuple[ListQuery, str | None]:
        """The query of a request's parameters, and what was wrong with its status (None: nothing)."""
        status_text = (params.get("status") or "").strip()
        status = next((s for s in STATUSES if s.lower() == status_text.lower()), None)
        sort = params.get("sort") if params.get("sort") in SORTS else "updated"
        page, before = params.get("page", ""), params.get("before", "")
        query = ListQuery(workflow=params.get("workflow") or None, state=params.get("state") or None, status=status,
                          search=" ".join((params.get("q") or "").split())[:MAX_SEARCH], sort=sort,
                          page=int(page) if page.isdigit() and len(page) < 9 else 0,
                          before=int(before) if before.isdigit() and len(before) < 19 else None)
        return query, f"{status_text!r} is not a status" if status_text and status is None else None

    @property
    def filters(self) -> dict[str, str]:
        """The parameters that choose the instances and their order (the page links keep them)."""
        chosen = {"workflow": self.workflow, "state": self.state, "status": self.status, "q": self.search or None,
                  "sort": self.sort if self.sort != "updated" else None}
        return {name: value for name, value in chosen.items() if value}

    def matches(self, instance: Any) -> bool:
        return ((self.status is None or str(instance.status) == self.status)
                and (self.workflow is None or instance.workflow_id == self.workflow)
                and (self.state is None or instance.state == self.state))


class InstanceList:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.events = pages.engine.events
        self.catalog = pages.engine.catalog

    def known_states(self, tenant: str, names: dict[str, str | None], workflow: str | None) -> list[str]:
        states: set[str] = set()
        for workflow_id in ([workflow] if workflow in names else list(names)[:50]):
            try:
                states.update(self.catalog.get(tenant, workflow_id).states)
            except WaymarkError:
                continue
        return sorted(states)[:500]

    def data(self, tenant: str, query: ListQuery) -> dict[str, Any]:
        """A page of the list: by id in natural order (`page` counts pages), or the most recently updated first
        (`before` is where the page starts in the feed)."""
        names = definition_names(self.catalog, tenant)
        data: dict[str, Any] = {"names": names, "states": self.known_states(tenant, names, query.workflow),
                                "complete": True, "following": None}
        if query.sort == "id":
            found = by_natural_id(self.events, tenant, status=query.status, workflow_id=query.workflow,
                                  state=query.state, search=query.search, offset=query.page * PAGE_SIZE,
                                  limit=PAGE_SIZE, max_scanned=MAX_SCANNED)
            more = (query.page + 1) * PAGE_SIZE < found.total
            return {**data, "items": found.items, "complete": found.complete, "scanned": MAX_SCANNED,
                    "following": query.page + 1 if more else None}
        matching = searched(query.search)
        recent = recently_updated(self.events, tenant, end=feed_end(self.events, tenant), before=query.before,
                                  limit=PAGE_SIZE,
                                  matches=lambda instance: query.matches(instance) and matching(instance))
        items = recent.items
        if query.before is None and ID.match(query.search):  # an id typed whole is found however old it is
            exact = exactly(self.events, tenant, query.search)
            if exact is not None and query.matches(exact) and all(i.id != exact.id for i in items):
                items = [exact, *items]
        return {**data, "items": items, "following": recent.before}

    async def page(self, request: Request, session: Session) -> Response:
        query, problem = ListQuery.of(request.query_params)
        data = await self.pages.ctx.run(self.data, session.tenant, query)
        following = data.pop("following")
        page_key = "page" if query.sort == "id" else "before"
        next_link = f"?{urlencode({**query.filters, page_key: following})}" if following is not None else None
        started = query.page > 0 or query.before is not None
        return self.pages.render(request, "instances.html", session=session, nav="instances",
                                 filters=query.filters, workflow=query.workflow or "", state=query.state or "",
                                 status=query.status or "", search=query.search, sort=query.sort,
                                 next_link=next_link, first_link=f"?{urlencode(query.filters)}" if started else None,
                                 status_error=problem, error=None, **data)
