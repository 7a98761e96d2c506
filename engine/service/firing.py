"""A timer's firing, as the queue delivers it: applied once if its timer is pending, recorded if it is stale.

The message names a timer (id, the visit's entry sequence, the firing's number); the instance's own record of its
pending timers decides what happens:

- pending and due: one commit, `TimerFired` and what its trigger did (engine/domain/scheduling.py), known by the
  firing's trigger id, so a second delivery is a duplicate;
- pending but not due yet (a clock ahead elsewhere): put back on the queue for the rest of its time — never early;
- not pending, but it was scheduled (its visit ended, it was cancelled): `TriggerIgnored` with why, never applied
  to the visit the instance is in now;
- never scheduled (its commit lost a race after the message was sent): dropped, with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from engine.domain import (
    ActionAttempt,
    Decision,
    EventType,
    Instance,
    RetryAction,
    Services,
    decide_fire,
    decide_stale_firing,
    firing_id,
    parse_time,
    scheduling_id,
)
from engine.service.commands import FireTimer, to_message
from engine.service.results import Result
from engine.service.retrying import retried

if TYPE_CHECKING:
    from engine.service.definitions import DefinitionCatalog
    from engine.service.timers import TimerScheduler
    from engine.stores.base import EventStore

log = logging.getLogger("waymark.timers")

_LOOK_AHEAD = 64  # events read after a visit's entry to find the TimerScheduled of its first firing


class Processor(Protocol):
    """What a firing needs of the command processor (engine/service/processor.py, which hands it its firings)."""

    events: EventStore
    definitions: DefinitionCatalog
    scheduler: TimerScheduler | None
    clock: Callable[[], datetime]

    def services_for(self, attempts: Mapping[str, ActionAttempt] | None = None) -> Services: ...

    def decide_and_append(self, tenant: str, instance_id: str, command_id: str,
                          decide: Callable[[Instance], Decision]) -> Result: ...


class _NotDue(Exception):
    def __init__(self, due_at: str) -> None:
        self.due_at = due_at


class _NeverScheduled(Exception):
    pass


def fire(processor: Processor, command: FireTimer) -> list[Result]:
    tenant, instance_id = command.tenant, command.instance_id

    def decide(instance: Instance) -> Decision:
        timer = instance.timer(command.timer_id, command.entry_sequence)
        if timer is not None and timer.n == command.n:
            if parse_time(timer.due_at) > processor.clock():
                raise _NotDue(timer.due_at)
            workflow = processor.definitions.get(tenant, instance.workflow_id, instance.workflow_version)
            return decide_fire(instance, workflow, timer, now=processor.clock(),
                               services=processor.services_for(command.action_retries))
        if not _was_scheduled(processor, tenant, instance, command):
            raise _NeverScheduled
        return decide_stale_firing(instance, timer_id=command.timer_id, entry_sequence=command.entry_sequence,
                                   n=command.n, trigger_id=command.trigger_id, topic=None,
                                   reason=_why_stale(instance, command), now=processor.clock())

    fields = {"tenant": tenant, "instanceId": instance_id, "triggerId": command.trigger_id}
    try:
        return [processor.decide_and_append(tenant, instance_id, command.trigger_id, decide)]
    except _NotDue as early:
        assert processor.scheduler is not None  # it fired: something scheduled it
        processor.scheduler.schedule(tenant, to_message(command), due=parse_time(early.due_at),
                                     key=command.trigger_id, instance_id=instance_id)
        log.info("a timer came before it was due; put back until %s", early.due_at, extra=fields)
        return []
    except _NeverScheduled:
        log.info("dropped the firing of a timer that was never scheduled (its commit lost a race)", extra=fields)
        return []
    except RetryAction as retry:
        raise retried(command, retry) from None


def _why_stale(instance: Instance, command: FireTimer) -> str:
    if command.entry_sequence is None:
        return f"scheduled trigger {command.timer_id!r} was cancelled"
    if instance.entry_sequence != command.entry_sequence:
        return (f"timer {command.timer_id!r} belongs to the visit that began at event {command.entry_sequence}, "
                f"which has ended (the instance is in state {instance.state!r} since event "
                f"{instance.entry_sequence}); it is not applied to this visit")
    return f"timer {command.timer_id!r} (firing {command.n}) of this visit is no longer pending"


def _was_scheduled(processor: Processor, tenant: str, instance: Instance, command: FireTimer) -> bool:
    """Whether the history records the TimerScheduled of this firing (two indexed reads at most)."""
    events = processor.events
    if command.entry_sequence is None:
        return events.find_trigger(tenant, instance.id, scheduling_id(command.timer_id)) is not None
    if command.entry_sequence > instance.version:
        return False
    if command.n > 1:
        previous = events.find_trigger(tenant, instance.id, firing_id(instance.id, command.entry_sequence,
                                                                      command.timer_id, command.n - 1))
        candidates = list(previous.events) if previous is not None else []
    else:
        candidates = events.read(tenant, instance.id, after=command.entry_sequence - 1, limit=_LOOK_AHEAD)
    return any(event.type is EventType.TIMER_SCHEDULED and event.data.get("timerId") == command.timer_id
               and event.data.get("entrySequence") == command.entry_sequence and event.data.get("n") == command.n
               for event in candidates)
