"""The dashboard's page of one instance (`GET /ui/instances/{id}`): its state, context, diagram (with the path it
took), a page of its timeline, the explanation of where it is, and the actions it allows (instance_actions.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from engine.domain import Status, WaymarkError, WorkflowDefinition
from engine.service.explain import explain
from engine.ui.diagram import layout, path_of
from engine.ui.pages import Pages, operation_id
from engine.ui.sessions import Session
from engine.ui.timeline import entries, pretty_json

__all__ = ["InstancePage"]

TIMELINE_PAGE = 200  # events on an instance page
PATH_EVENTS = 2000  # events read to draw the path an instance took (its latest ones, for a very long history)


class InstancePage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.events = pages.engine.events
        self.catalog = pages.engine.catalog

    def data(self, tenant: str, instance_id: str, start: int | None) -> dict[str, Any]:
        events = self.events
        instance = events.load(tenant, instance_id)
        definition: WorkflowDefinition | None
        try:
            definition = self.catalog.get(tenant, instance.workflow_id, instance.workflow_version)
        except WaymarkError:
            definition = None
        version = instance.version
        first = max(1, min(start, version)) if start else max(1, version - TIMELINE_PAGE + 1)
        history = events.read(tenant, instance_id, after=first - 1, limit=TIMELINE_PAGE)
        last = history[-1].sequence if history else first - 1
        # The explanation and the path on the diagram are about where it is now: its latest events, whatever
        # page of the timeline is shown.
        latest = history if first == 1 and last == version else events.read(
            tenant, instance_id, after=max(0, version - PATH_EVENTS), limit=PATH_EVENTS)
        explained = explain(instance.to_dict(), [event.to_dict() for event in latest])
        taken, visited = path_of(latest)
        state = definition.states.get(instance.state) if definition else None
        return {
            "instance": instance, "definition": definition, "state": state,
            "diagram": layout(definition, current=instance.state, taken=taken, visited=visited) if definition
            else None,
            "path_partial": PATH_EVENTS if version > PATH_EVENTS else None,
            "timeline": entries(history), "explanation": explained, "context": pretty_json(dict(instance.context)),
            "earlier": max(1, first - TIMELINE_PAGE) if first > 1 else None,
            "later": last + 1 if last < version else None,
            "states": list(definition.states.values()) if definition else [],
        }

    async def page(self, request: Request, session: Session) -> Response:
        instance_id = request.path_params["instance_id"]
        start_text = request.query_params.get("from", "")
        start = int(start_text) if start_text.isdigit() and len(start_text) < 19 else None
        data = await self.pages.ctx.run(self.data, session.tenant, instance_id, start)
        instance = data["instance"]
        return self.pages.render(request, "instance.html", session=session, nav="instances",
                                 operation=operation_id(), can_recover=instance.status is Status.FAULTED,
                                 can_terminate=instance.status in (Status.WAITING, Status.FAULTED), **data)
