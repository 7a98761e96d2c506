"""Parked commands as operators use them: park what can never be processed as it is, list it, replay or discard it.

*Requeue* replays a parked command at once, through the same `CommandProcessor` the queue workers run, rather than
putting it at the tail of the command queue: at that moment it goes ahead of every command still queued for its
instance (the seed ADR's "replay it into the engine at the head of the queue"). What was applied to the instance
while it was parked is already in its history, before it — each trigger is still decided on the instance as it is
then, and a client that needs an order states it with `If-Match` (docs/http-api.md, "Ordering"). Its trigger id keeps a
replay idempotent: replaying one whose trigger is recorded already changes nothing and removes the record.

A command that fails again stays parked (its record notes the new failure); a store that is unavailable stops a
bulk replay where it is (the rest stay parked, nothing is lost).
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from engine.domain import NotFound, StoreUnavailable, timestamp
from engine.queues.base import CommandQueue
from engine.service.commands import from_message
from engine.service.processor import CommandProcessor
from engine.stores.parked import MAX_PAGE, ParkedCommand, ParkedPage, ParkedQuery, ParkedStore

__all__ = ["ParkedCommands", "Unparkable"]

log = logging.getLogger("waymark.parked")

MAX_BULK = 1000


class Unparkable(ValueError):
    """A command that names no tenant: it cannot go to a tenant's store (it stays on the queue's poison side)."""


class ParkedCommands:
    def __init__(self, store: ParkedStore, processor: CommandProcessor, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.processor = processor
        self.clock = clock

    # ------------------------------------------------------------------------------------------ parking

    def park(self, body: Mapping[str, Any], *, reason: str, detail: str, delivery_count: int,
             error_type: str | None = None, first_failure_at: str | None = None,
             message_id: str | None = None) -> ParkedCommand:
        """Keep a command in its tenant's store. Raises Unparkable (no tenant in the body), TenantNotFound,
        StoreUnavailable: then it must stay on the queue."""
        tenant = body.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise Unparkable("the command names no tenant")
        now = timestamp(self.clock())
        command = ParkedCommand(id=message_id or uuid.uuid4().hex, body=dict(body), reason=reason, detail=detail,
                                delivery_count=delivery_count, first_failure_at=first_failure_at or now,
                                last_failure_at=now, parked_at=now, error_type=error_type)
        self.store.park(tenant, command)
        log.warning("command parked (%s): %s", reason, detail, extra={
            "tenant": tenant, "instanceId": command.instance_id, "triggerId": command.trigger_id,
            "parkedId": command.id, "reason": reason, "deliveryCount": delivery_count})
        return command

    # ------------------------------------------------------------------------------------------ reading

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        return self.store.list(tenant, query, limit=limit, continuation=continuation)

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        return self.store.get(tenant, parked_id)

    def matching(self, tenant: str, query: ParkedQuery, limit: int) -> builtins.list[ParkedCommand]:
        found: builtins.list[ParkedCommand] = []
        continuation = None
        while len(found) < limit:
            page = self.store.list(tenant, query, limit=min(MAX_PAGE, limit - len(found)), continuation=continuation)
            found += page.items
            continuation = page.continuation
            if continuation is None:
                break
        return found[:limit]

    # ------------------------------------------------------------------------------------------ acting

    def requeue_one(self, tenant: str, parked_id: str) -> dict[str, Any]:
        """Replay one parked command now (StoreUnavailable propagates: it stays parked)."""
        return self._replay(tenant, self.store.get(tenant, parked_id))

    def discard_one(self, tenant: str, parked_id: str) -> None:
        command = self.store.get(tenant, parked_id)  # ParkedNotFound
        self.store.remove(tenant, parked_id)
        log.warning("parked command discarded", extra={"tenant": tenant, "parkedId": parked_id,
                                                        "instanceId": command.instance_id,
                                                        "triggerId": command.trigger_id})

    def requeue(self, tenant: str, query: ParkedQuery, *, limit: int = 100, dry_run: bool = False) -> dict[str, Any]:
        """Replay every parked command matching `query` (in the order they were parked), or list them (`dry_run`)."""
        targets = self.matching(tenant, query, limit)
        report: dict[str, Any] = {"dryRun": dry_run, "matched": [c.to_dict() for c in targets], "results": []}
        if dry_run:
            return report
        for index, command in enumerate(targets):
            try:
                report["results"].append(self._replay(tenant, command))
            except StoreUnavailable as e:
                log.warning("replaying parked commands stopped: %s", e, extra={"tenant": tenant})
                report["results"] += [{"id": c.id, "outcome": "not-attempted", "detail": "the store became "
                                       "unavailable; it stays parked"} for c in targets[index:]]
                break
        return report

    def discard(self, tenant: str, query: ParkedQuery, *, limit: int = 100, dry_run: bool = False) -> dict[str, Any]:
        targets = self.matching(tenant, query, limit)
        report: dict[str, Any] = {"dryRun": dry_run, "matched": [c.to_dict() for c in targets], "results": []}
        if not dry_run:
            for command in targets:
                removed = self.store.remove(tenant, command.id)
                report["results"].append({"id": command.id, "outcome": "discarded" if removed else "gone"})
            log.warning("%d parked command(s) discarded", len(targets), extra={"tenant": tenant})
        return report

    def drain_poison(self, queue: CommandQueue, *, limit: int = 100) -> int:
        """Move what the queue's poison queue holds for a known tenant into that tenant's parked store (the Functions
        host moves a message there after its last delivery when the queue function could not park it; so does the
        SQLite queue's receive after a worker died on its last delivery). What names no tenant, an unknown one, or a
        tenant whose store does not answer stays where it is, for the admin's `waymark commands poison`. How many
        were moved."""
        moved = 0
        for message in queue.poisoned(limit=limit):
            try:
                self.park(message.body, reason="poisoned", delivery_count=message.dequeue_count,
                          detail=f"the queue gave up on it after {message.dequeue_count} deliveries (moved to its "
                                 "poison queue)", message_id=message.id)
            except (Unparkable, NotFound, StoreUnavailable):
                continue
            queue.discard_poisoned(message.id)
            moved += 1
        return moved

    def _replay(self, tenant: str, command: ParkedCommand) -> dict[str, Any]:
        shown = {"id": command.id, "instanceId": command.instance_id, "triggerId": command.trigger_id}
        try:
            parsed = from_message(command.body)
            if parsed.tenant != tenant:
                raise ValueError(f"the command names tenant {parsed.tenant!r}, not {tenant!r}")
            results = self.processor.handle(parsed)
        except StoreUnavailable:
            raise
        except Exception as e:  # it fails again: it stays parked, with this failure noted
            now = timestamp(self.clock())
            self.store.park(tenant, replace(command, last_failure_at=now, detail=f"{type(e).__name__}: {e}",
                                            error_type=type(e).__name__))
            return {**shown, "outcome": "failed", "errorType": type(e).__name__, "detail": str(e)}
        self.store.remove(tenant, command.id)
        log.info("parked command replayed", extra={"tenant": tenant, "parkedId": command.id,
                                                   "instanceId": command.instance_id})
        last = results[-1] if results else None
        return {**shown, "outcome": str(last.outcome) if last is not None else "done",
                "duplicate": bool(last and last.duplicate), "applied": len(results),
                "sequence": last.commit.last_sequence if last is not None else None}
