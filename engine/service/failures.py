"""What happens to a command that did not succeed — the one policy of the local worker and the Azure queue function.

    failure                                   what is done
    StoreUnavailable (an outage)              held: a copy re-sent with a growing delay, the original completed
                                              (engine/service/holding.py); past the hold: parked `hold-expired`
    the tenant's breaker is open              held at once, without touching the store
    MalformedCommand (unknown kind, a         parked `malformed` at once: retrying changes nothing
    missing field: version skew)
    InstanceAlreadyExists                     parked `instance-exists` at once
    RetryLater (an `http` step asks for a      re-sent with the step's backoff as its delay (a fresh message: its
    retry: engine/service/retrying.py)        dequeue count starts again), the original completed
    anything else (a bug, an instance that    retried by the queue (its dequeue count grows); on the last delivery
    does not exist yet)                       the queue allows, parked `failed` with the error
    a command naming no tenant, or an         left to the queue, which poisons it after its last delivery (the
    unknown one, or a park that fails         admin's `waymark commands poison`); nothing is dropped

Parking and holding need the queue and the tenant's parked store; when the step they need fails, the command falls
back to the queue's own retry (the local worker releases it, the queue function raises), so a failure of the
failure path still loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.domain import InstanceAlreadyExists, NotFound, StoreUnavailable
from engine.service.commands import MalformedCommand
from engine.service.holding import CircuitBreakers, HoldPolicy, held_body, hold_of
from engine.service.parked import ParkedCommands, Unparkable
from engine.service.retrying import RetryLater

__all__ = ["CommandFailures"]

log = logging.getLogger("waymark.failures")

Resend = Callable[[Mapping[str, Any], float], object]  # queue.send(body, delay=…)


@dataclass
class CommandFailures:
    parked: ParkedCommands
    breakers: CircuitBreakers
    resend: Resend
    hold: HoldPolicy = field(default_factory=HoldPolicy)
    max_dequeue_count: int = 5
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def held_by_breaker(self, body: Mapping[str, Any], *, message_id: str | None = None) -> bool:
        """Before processing: True when the tenant's breaker holds the command (a copy was re-sent with a delay:
        complete the original); False to go ahead."""
        tenant = body.get("tenant")
        if not isinstance(tenant, str):
            return False
        delay = self.breakers.retry_in(tenant)
        if delay is None:
            return False
        error = StoreUnavailable(self.breakers.states().get(tenant, {}).get("store") or "store",
                                 "its circuit breaker is open")
        return self._hold(body, error, max(delay, self.hold.delay(hold_of(body).attempt + 1)), why="breaker",
                          message_id=message_id)

    def succeeded(self, body: Mapping[str, Any]) -> None:
        tenant = body.get("tenant")
        if isinstance(tenant, str):
            self.breakers.success(tenant)

    def failed(self, body: Mapping[str, Any], error: BaseException, *, dequeue_count: int,
               message_id: str | None = None) -> bool:
        """After a failure: True when the command is taken care of (held or parked: complete the original); False
        to let the queue retry it (release it, or raise from the queue function)."""
        tenant = body.get("tenant")
        if isinstance(error, RetryLater):
            return self._retry(body, error, message_id)
        if isinstance(error, StoreUnavailable):
            if isinstance(tenant, str):
                self.breakers.failure(tenant, error)
            if hold_of(body).expired(self.hold, self.clock()):
                return self._park(body, "hold-expired", error, dequeue_count, message_id) or self._hold(
                    body, error, self.hold.max_delay, why="outage", message_id=message_id)
            return self._hold(body, error, self.hold.delay(hold_of(body).attempt + 1), why="outage",
                              message_id=message_id)
        if isinstance(tenant, str):
            self.breakers.success(tenant)  # its store answered (a probe is over): the failure is the command's own
        if isinstance(error, MalformedCommand):
            return self._park(body, "malformed", error, dequeue_count, message_id)
        if isinstance(error, InstanceAlreadyExists):
            return self._park(body, "instance-exists", error, dequeue_count, message_id)
        if dequeue_count >= self.max_dequeue_count:
            return self._park(body, "failed", error, dequeue_count, message_id)
        return False

    def _retry(self, body: Mapping[str, Any], retry: RetryLater, message_id: str | None) -> bool:
        try:
            for copy, delay in retry.resends:
                self.resend(copy, delay)
        except Exception as e:  # the queue itself is away: the original stays and the queue retries it
            log.error("could not put the command back for its retry (%s); the queue retries it", e,
                      extra={"messageId": message_id, "tenant": body.get("tenant")})
            return False
        log.info("an http step is retried later, its command back on the queue: %s", retry.reason,
                 extra={"messageId": message_id, "tenant": body.get("tenant"), "instanceId": body.get("instanceId")})
        return True

    def _hold(self, body: Mapping[str, Any], error: StoreUnavailable, delay: float, *, why: str,
              message_id: str | None) -> bool:
        copy = held_body(body, error, self.clock())
        try:
            self.resend(copy, delay)
        except Exception as e:  # the queue itself is away: the original stays and the queue retries it
            log.error("could not hold the command (re-sending it failed: %s); the queue retries it", e,
                      extra={"messageId": message_id, "tenant": body.get("tenant")})
            return False
        tenant = str(body.get("tenant"))
        self.breakers.count_held(tenant, why=why)
        log.info("command held for %.0f s (%s, attempt %d): %s", delay, why, copy["hold"]["attempt"], error.store,
                 extra={"messageId": message_id, "tenant": tenant, "instanceId": body.get("instanceId")})
        return True

    def _park(self, body: Mapping[str, Any], reason: str, error: BaseException, dequeue_count: int,
              message_id: str | None) -> bool:
        hold = hold_of(body)
        detail = (f"the {error.store} was unavailable for longer than the hold ({self.hold.hold_seconds:g} s)"
                  if isinstance(error, StoreUnavailable) else f"{type(error).__name__}: {error}")
        try:
            self.parked.park(body, reason=reason, detail=detail, error_type=type(error).__name__,
                             delivery_count=dequeue_count + hold.attempt, first_failure_at=hold.since,
                             message_id=message_id)
        except (Unparkable, NotFound, StoreUnavailable) as e:
            log.error("could not park the command (%s: %s); the queue retries it and poisons it after its last "
                      "delivery", type(e).__name__, e, extra={"messageId": message_id, "tenant": body.get("tenant")})
            return False
        return True
