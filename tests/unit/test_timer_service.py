"""Timers through the service layer: scheduled on the queue before their commit, fired once by the worker,
stale firings recorded, early ones put back, long ones kept in the index — all on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.domain import EventType, Outcome, SchedulingRefused, TimerNotFound, Trigger
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import CreateInstance, FireTimer, SendTrigger, from_message, to_message
from engine.service.definitions import DefinitionCatalog
from engine.service.processor import CommandProcessor
from engine.service.timers import TimerScheduler
from engine.service.worker import Worker
from engine.stores.memory import MemoryDefinitionStore, MemoryEventStore
from engine.stores.timers import MemoryTimerIndex

T = "acme"
EPOCH = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

DEFINITION = {
    "id": "approval", "initialState": "waiting",
    "states": {
        "waiting": {
            "timeouts": [{"id": "escalate", "after": "PT2S", "trigger": {"topic": "escalate"}},
                         {"id": "remind", "after": "PT1S", "repeat": True, "trigger": {"topic": "remind"}}],
            "transitions": [{"id": "escalate", "trigger": "escalate", "target": "escalated",
                             "conditions": [{"type": "expression", "expression": "!has(context.hold)"}]},
                            {"id": "remind", "trigger": "remind", "target": "waiting",
                             "conditions": [{"type": "expression", "expression": "false"}]},
                            {"id": "approve", "trigger": "approve", "target": "approved"},
                            {"id": "reopen", "trigger": "reopen", "target": "waiting-again"}],
        },
        "waiting-again": {"transitions": [{"id": "back", "trigger": "back", "target": "waiting"}]},
        "escalated": {"transitions": [{"id": "approve-late", "trigger": "approve", "target": "approved"}]},
        "approved": {},
    },
}


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.seconds)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


class Rig:
    def __init__(self, *, max_delay: float | None = None) -> None:
        self.clock = Clock()
        self.queue = MemoryCommandQueue(clock=lambda: self.clock.seconds)
        self.events = MemoryEventStore()
        self.index = MemoryTimerIndex()
        self.scheduler = TimerScheduler(self.queue, clock=self.clock.now, max_delay=max_delay,
                                        index=self.index if max_delay is not None else None)
        self.catalog = DefinitionCatalog(MemoryDefinitionStore())
        self.catalog.put(T, DEFINITION)
        self.processor = CommandProcessor(self.events, self.catalog, clock=self.clock.now, scheduler=self.scheduler)
        self.worker = Worker(self.queue, self.processor, visibility_timeout=30)

    def create(self, instance_id: str = "i-1", context: dict[str, Any] | None = None) -> None:
        self.processor.create(CreateInstance(T, instance_id, "approval", f"create-{instance_id}",
                                             context=context or {}))

    def drain(self) -> int:
        handled = 0
        while n := self.worker.run_once():
            handled += n
        return handled

    def types(self, instance_id: str = "i-1") -> list[str]:
        return [str(e.type) for e in self.events.read(T, instance_id)]


def test_a_timer_fires_once_when_due_and_not_before() -> None:
    rig = Rig()
    rig.create()
    rig.clock.advance(1.9)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "waiting"
    rig.clock.advance(0.1)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "escalated"
    fired = [e for e in rig.events.read(T, "i-1") if e.type is EventType.TIMER_FIRED and e.data["timerId"] == "escalate"]
    assert len(fired) == 1
    assert fired[0].at >= fired[0].data["dueAt"]  # recorded times: never before its due time
    rig.clock.advance(60)
    assert rig.drain() == 0


def test_leaving_the_state_cancels_and_the_late_firing_is_recorded_not_applied() -> None:
    rig = Rig()
    rig.create()
    rig.clock.advance(0.5)
    rig.processor.trigger(T, "i-1", Trigger("reopen", "leave"))
    rig.processor.trigger(T, "i-1", Trigger("back", "come-back"))  # a new visit of `waiting`
    rig.clock.advance(1.6)  # the first visit's escalate (due at 2 s) comes now
    rig.drain()
    events = rig.events.read(T, "i-1")
    stale = [e for e in events if e.type is EventType.TRIGGER_IGNORED and e.trigger_id == "i-1:1:escalate:1"]
    assert len(stale) == 1 and "has ended" in stale[0].data["reason"]
    assert rig.events.load(T, "i-1").state == "waiting"  # not escalated: the new visit's timer is not due
    rig.clock.advance(0.5)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "escalated"  # the new visit's own timer, due 2 s after its entry


def test_a_repeating_timer_fires_every_interval_then_stops_when_the_state_is_left() -> None:
    rig = Rig()
    rig.create(context={"hold": True})
    for _ in range(4):
        rig.clock.advance(1.0)
        rig.drain()
    fired = [e.data["n"] for e in rig.events.read(T, "i-1")
             if e.type is EventType.TIMER_FIRED and e.data["timerId"] == "remind"]
    assert fired == [1, 2, 3, 4]
    rig.processor.trigger(T, "i-1", Trigger("approve", "done"))
    rig.clock.advance(5)
    rig.drain()
    after = [e for e in rig.events.read(T, "i-1") if e.type is EventType.TIMER_FIRED and e.data["timerId"] == "remind"]
    assert len(after) == 4
    assert rig.events.load(T, "i-1").timers == ()


def test_a_firing_delivered_twice_applies_once() -> None:
    rig = Rig()
    rig.create()
    (timer,) = [t for t in rig.events.load(T, "i-1").timers if t.id == "escalate"]
    duplicate = FireTimer(T, "i-1", timer.id, timer.entry_sequence, 1, timer.trigger["id"], timer.due_at)
    rig.queue.send(to_message(duplicate), delay=2)
    rig.clock.advance(2)
    rig.drain()
    assert sum(1 for e in rig.events.read(T, "i-1") if e.type is EventType.TIMER_FIRED
               and e.data["timerId"] == "escalate") == 1


def test_an_early_delivery_is_put_back_until_due() -> None:
    rig = Rig()
    rig.create()
    (timer,) = [t for t in rig.events.load(T, "i-1").timers if t.id == "escalate"]
    early = FireTimer(T, "i-1", timer.id, timer.entry_sequence, 1, timer.trigger["id"], timer.due_at)
    assert rig.processor.handle(early) == []
    assert rig.events.load(T, "i-1").state == "waiting"
    rig.clock.advance(2)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "escalated"


def test_a_firing_whose_commit_never_happened_is_dropped_without_a_trace() -> None:
    rig = Rig()
    rig.create()
    version = rig.events.load(T, "i-1").version
    orphan = FireTimer(T, "i-1", "escalate", 99, 1, "i-1:99:escalate:1", EPOCH.isoformat())
    assert rig.processor.handle(orphan) == []
    assert rig.events.load(T, "i-1").version == version


def test_the_firing_is_on_the_queue_before_its_commit_is_stored() -> None:
    rig = Rig()

    class Failing(MemoryEventStore):
        def append(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("storage gone")

    rig.processor.events = Failing()
    with pytest.raises(RuntimeError):
        rig.create()
    bodies = [from_message(m.body) for m in rig.queue.receive(max_messages=10)]
    assert bodies == []  # nothing is visible yet: the firings wait for their due time …
    rig.clock.advance(2)
    kinds = sorted(type(from_message(m.body)).__name__ for m in rig.queue.receive(max_messages=10))
    assert kinds == ["FireTimer", "FireTimer"]  # … and they were sent before the failed append


def test_a_scheduled_trigger_fires_at_its_time_and_a_cancelled_one_is_only_recorded() -> None:
    rig = Rig()
    rig.create(context={"hold": True})
    result = rig.processor.schedule_trigger(T, "i-1", Trigger("approve", "approve-at-5", {"by": "ann"}),
                                            due=EPOCH + timedelta(seconds=5), by="ann")
    assert result.outcome is Outcome.SCHEDULED
    again = rig.processor.schedule_trigger(T, "i-1", Trigger("approve", "approve-at-5"),
                                           due=EPOCH + timedelta(seconds=5))
    assert again.duplicate
    rig.processor.schedule_trigger(T, "i-1", Trigger("approve", "approve-at-3"), due=EPOCH + timedelta(seconds=3))
    rig.processor.cancel_scheduled(T, "i-1", "approve-at-3", by="ann", reason="no", command_id="c1")
    with pytest.raises(TimerNotFound):
        rig.processor.cancel_scheduled(T, "i-1", "approve-at-3", by="ann", reason="no", command_id="c2")
    rig.clock.advance(4.9)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "waiting"
    assert rig.events.find_trigger(T, "i-1", "approve-at-3") is not None  # recorded as ignored, not applied
    rig.clock.advance(0.1)
    rig.drain()
    applied = rig.events.find_trigger(T, "i-1", "approve-at-5")
    assert applied is not None and applied.state.state == "approved"
    with pytest.raises(SchedulingRefused):
        rig.processor.schedule_trigger(T, "i-1", Trigger("approve", "too-late"), due=EPOCH)


def test_a_timer_beyond_the_queue_limit_waits_in_the_index_until_brought_forward() -> None:
    rig = Rig(max_delay=1.0)  # the queue holds a message at most 1 s (7 days on Azure)
    rig.create()
    assert {t.key for t in rig.index.due(T, until="9999")} == {"i-1:1:escalate:1"}  # 2 s: too far for the queue
    assert rig.scheduler.bring_forward(T) == 0
    rig.clock.advance(1.0)
    assert rig.scheduler.bring_forward(T) == 1
    assert rig.index.due(T, until="9999") == []
    rig.clock.advance(1.0)
    rig.drain()
    assert rig.events.load(T, "i-1").state == "escalated"


def test_a_trigger_command_round_trips_through_the_queue_format() -> None:
    command = FireTimer(T, "i-1", "escalate", 1, 2, "i-1:1:escalate:2", "2026-11-21T12:00:00.000000Z")
    assert from_message(to_message(command)) == command
    send = SendTrigger(T, "i-1", Trigger("a", "b"))
    assert from_message(to_message(send)) == send
