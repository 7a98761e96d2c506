"""The dashboard's live change feed: the page starts with the latest commits and app.js polls for the next ones
every 2 s.

    GET  /ui/feed
    GET  /ui/feed/events?after=N   the pull feed, summarised, for that page (JSON, session-authenticated)
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from engine.domain import StoreUnavailable
from engine.feed.cloudevents import TYPE_PREFIX, CloudEventMapper, to_batch
from engine.ui.listing import MAX_POSITION, feed_end
from engine.ui.pages import Pages
from engine.ui.sessions import Session

__all__ = ["FeedPages"]

FEED_PAGE = 100
FEED_BACKLOG = 25  # commits the live page starts with


class FeedPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.events = pages.engine.events
        self.mapper = CloudEventMapper(self.events)

    def items(self, request: Request, tenant: str, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A summary of each CloudEvent of the commits after `after`, and the position to ask from next."""
        commits = self.events.read_feed(tenant, after=after, limit=limit)
        cloud_events = [event for group in self.mapper.page(tenant, commits) for event in group]
        following = commits[-1].position if commits and commits[-1].position is not None else after
        prefix = self.pages.prefix_of(request)
        items = []
        for event in json.loads(to_batch(cloud_events)) if cloud_events else []:
            data = event.get("data") or {}
            subject = str(event.get("subject", ""))
            items.append({
                "id": event.get("id"), "type": str(event.get("type", "")).removeprefix(TYPE_PREFIX),
                "time": event.get("time"), "subject": subject, "sequence": event.get("sequence"),
                "workflowId": data.get("workflowId"), "previousState": data.get("previousState"),
                "newState": data.get("newState"), "newStatus": data.get("newStatus"),
                "href": f"{prefix}/instances/{quote(subject, safe='')}",
            })
        return items, following

    async def page(self, request: Request, session: Session) -> Response:
        def load() -> tuple[list[dict[str, Any]], int]:
            end = feed_end(self.events, session.tenant)
            return self.items(request, session.tenant, max(0, end - FEED_BACKLOG), FEED_BACKLOG)

        items, following = await self.pages.ctx.run(load)
        return self.pages.render(request, "feed.html", session=session, nav="feed", items=list(reversed(items)),
                                 after=following)

    async def events_since(self, request: Request) -> Response:
        session = await self.pages.current(request)
        if session is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        after_text = request.query_params.get("after", "0")
        if not after_text.isdigit() or int(after_text) > MAX_POSITION:
            return JSONResponse({"error": "`after` is a feed position (an integer from 0)"}, status_code=400)
        try:
            items, following = await self.pages.ctx.run(self.items, request, session.tenant, int(after_text),
                                                         FEED_PAGE)
        except StoreUnavailable:
            return JSONResponse({"error": "storage unavailable"}, status_code=503)
        # Watching is using: the session's cookie is sealed again, as a page's is.
        return self.pages.kept(request, JSONResponse({"events": items, "next": following}), session)
