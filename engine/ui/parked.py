"""The dashboard's page of parked commands (`/ui/parked`): the tenant's commands that could not be processed, with
the filters and paging of the API, and requeue (replay now) or discard — one, or every match of the filters — each
after a confirmation page that lists what it will touch.

    GET  /ui/parked?instance=&reason=&since=&until=&continuation=   a page of 25, in parking order
    POST /ui/parked/act   action=requeue|discard, id=… (one) or the filters (every match); confirmed=yes to do it
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from engine.stores.parked import REASONS, ParkedQuery
from engine.ui.sessions import Session

if TYPE_CHECKING:
    from engine.api.context import ApiContext

__all__ = ["ParkedPages"]

log = logging.getLogger("waymark.ui")

PAGE_SIZE = 25
MAX_BULK = 1000
FILTERS = ("instance", "reason", "since", "until")

Render = Callable[..., HTMLResponse]


class ParkedPages:
    def __init__(self, ctx: ApiContext, *, render: Render, redirect: Callable[[str], RedirectResponse],
                 prefix_of: Callable[[Request], str]) -> None:
        self.parked = ctx.engine.parked
        self.ctx = ctx
        self.render = render
        self.redirect = redirect
        self.prefix_of = prefix_of

    @staticmethod
    def _filters(source: Any) -> dict[str, str]:
        return {name: str(source.get(name, "")).strip() for name in FILTERS if str(source.get(name, "")).strip()}

    @staticmethod
    def _query(filters: dict[str, str]) -> ParkedQuery:
        """ValueError names what is wrong (a reason that is not one, a time that is not RFC 3339)."""
        reason = filters.get("reason")
        if reason is not None and reason not in REASONS:
            raise ValueError(f"the reason is one of {', '.join(REASONS)}")
        return ParkedQuery(instance_id=filters.get("instance"), reason=reason, since=filters.get("since"),
                           until=filters.get("until"))

    async def page(self, request: Request, session: Session) -> Response:
        filters = self._filters(request.query_params)
        continuation = request.query_params.get("continuation") or None
        error = None
        items: list[Any] = []
        following = None
        try:
            query = self._query(filters)
            found = await self.ctx.run(lambda: self.parked.list(session.tenant, query, limit=PAGE_SIZE,
                                                                continuation=continuation))
            items, following = found.items, found.continuation
        except ValueError as e:
            error = f"Nothing listed: {e}."
        base = f"?{urlencode(filters)}" if filters else ""
        next_link = f"?{urlencode({**filters, 'continuation': following})}" if following else None
        return self.render(request, "parked.html", session=session, nav="parked", items=items, filters=filters,
                           reasons=REASONS, error=error, next_link=next_link,
                           first_link=base or "?" if continuation else None)

    async def act(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        filters = self._filters(form)
        back = f"{self.prefix_of(request)}/parked" + (f"?{urlencode(filters)}" if filters else "")
        if action not in ("requeue", "discard"):
            session.flash("error", "Choose requeue or discard.")
            return self.redirect(back)
        parked_id = form.get("id", "").strip() or None
        tenant = session.tenant
        if parked_id is not None:
            targets = [await self.ctx.run(self.parked.get, tenant, parked_id)]
        else:
            if not filters and form.get("all") != "yes":
                session.flash("error", "Give a filter first: the action applies to every parked command it matches.")
                return self.redirect(back)
            try:
                query = self._query(filters)
            except ValueError as e:
                session.flash("error", f"Nothing was done: {e}.")
                return self.redirect(back)
            targets = await self.ctx.run(self.parked.matching, tenant, query, MAX_BULK)
        if form.get("confirmed") != "yes":
            return self.render(request, "parked_confirm.html", session=session, nav="parked", action=action,
                               targets=targets, parked_id=parked_id, filters=filters, back=back,
                               everything=form.get("all") == "yes")
        results = await self.ctx.run(self._run, tenant, action, [t.id for t in targets])
        done = sum(1 for r in results if r["outcome"] not in ("failed", "not-attempted"))
        failed = [r for r in results if r["outcome"] in ("failed", "not-attempted")]
        verb = {"requeue": "replayed", "discard": "discarded"}[action]
        message = f"{done} of {len(results)} parked command(s) {verb}"
        if failed:
            message += f"; {len(failed)} stayed parked ({failed[0].get('detail') or failed[0]['outcome']})"
        session.flash("error" if failed else "success", message + ".")
        log.info("dashboard %s of %d parked command(s) of %s by %s", action, len(results), tenant, session.who())
        return self.redirect(back)

    def _run(self, tenant: str, action: str, ids: list[str]) -> list[dict[str, Any]]:
        """Each command matching when the action was confirmed, in parking order."""
        results: list[dict[str, Any]] = []
        for parked_id in ids:
            try:
                if action == "requeue":
                    results.append(self.parked.requeue_one(tenant, parked_id))
                else:
                    self.parked.discard_one(tenant, parked_id)
                    results.append({"id": parked_id, "outcome": "discarded"})
            except Exception as e:  # gone meanwhile, or the store unavailable: said, and the rest go on
                results.append({"id": parked_id, "outcome": "failed", "detail": f"{type(e).__name__}: {e}"})
        return results
