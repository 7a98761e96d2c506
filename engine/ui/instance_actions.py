"""The dashboard's actions on an instance: recover (retry or reset, with a reason) and terminate. Each shows a
confirmation page first, unless the form says it was confirmed; an operation id makes sending it twice do it once.

    POST /ui/instances/{id}/recover
    POST /ui/instances/{id}/terminate
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from engine.domain import InvalidCommand, RecoveryMode, RecoveryRefused
from engine.ui.pages import ID, Pages, operation_id
from engine.ui.sessions import Session

__all__ = ["InstanceActions"]

log = logging.getLogger("waymark.ui")

MAX_REASON = 2000
OPERATION_ID = re.compile(r"^[!-~]{1,200}$")


def checked(form: dict[str, str], *, modes: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    """The action's fields, cleaned, and what is wrong with them (None: nothing)."""
    fields = {"mode": form.get("mode", modes[0]), "state": form.get("state", "").strip(),
              "reason": form.get("reason", "").strip(), "op": form.get("op", "")}
    if fields["mode"] not in modes:
        return fields, "Choose retry or reset."
    if not fields["reason"]:
        return fields, "Give a reason: it is recorded in the instance's history."
    if len(fields["reason"]) > MAX_REASON:
        return fields, f"The reason is longer than {MAX_REASON} characters."
    if fields["mode"] == "reset" and not ID.match(fields["state"]):
        return fields, "Choose the state to reset the instance to."
    if not OPERATION_ID.match(fields["op"]):
        fields["op"] = operation_id()
    return fields, None


class InstanceActions:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.events = pages.engine.events
        self.processor = pages.engine.processor

    def instance_url(self, request: Request, instance_id: str) -> str:
        return f"{self.pages.prefix_of(request)}/instances/{quote(instance_id, safe='')}"

    async def recover(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        return await self.operate(request, session, form, "recover")

    async def terminate(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        return await self.operate(request, session, form, "terminate")

    async def operate(self, request: Request, session: Session, form: dict[str, str], kind: str) -> Response:
        pages = self.pages
        instance_id = request.path_params["instance_id"]
        back = self.instance_url(request, instance_id)
        fields, problem = checked(form, modes=("retry", "reset") if kind == "recover" else ("terminate",))
        if problem is not None:
            session.flash("error", problem)
            return pages.redirect(back)
        if form.get("confirmed") != "yes":
            instance = await pages.ctx.run(self.events.load, session.tenant, instance_id)
            return pages.render(request, "confirm.html", session=session, nav="instances", kind=kind, fields=fields,
                                instance=instance, back=back)
        try:
            result = await pages.ctx.run(self._apply, session, instance_id, kind, fields)
        except (RecoveryRefused, InvalidCommand) as e:
            session.flash("error", f"Nothing was done: {e}")
            return pages.redirect(back)
        after = result.instance
        done = {"recover": f"{fields['mode'].capitalize()} done", "terminate": "Terminated"}[kind]
        again = " (this operation had been done already: it was not applied twice)" if result.duplicate else ""
        level = "error" if str(result.outcome) == "faulted" else "success"
        session.flash(level, f"{done}{again}: outcome {result.outcome}. {after.id} is now {after.status} in state "
                             f"{after.state}.")
        log.info("dashboard %s of %s/%s by %s: %s", kind, session.tenant, instance_id, session.who(), result.outcome)
        return pages.redirect(back)

    def _apply(self, session: Session, instance_id: str, kind: str, fields: dict[str, str]) -> Any:
        by, reason, op = session.who(), fields["reason"], fields["op"]
        if kind == "terminate":
            return self.processor.terminate(session.tenant, instance_id, by=by, reason=reason, command_id=op)
        return self.processor.recover(session.tenant, instance_id, mode=RecoveryMode(fields["mode"]), by=by,
                                      reason=reason, recovery_id=op,
                                      state=fields["state"] if fields["mode"] == "reset" else None)
