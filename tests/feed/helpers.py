"""Building histories for the feed tests: the expense claim driven through the processor, a workflow that
faults, recoveries and terminations, and events without a trigger id appended by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain import Commit, Event, EventType, RecoveryMode, Trigger, fold, timestamp
from engine.service.commands import CreateInstance, FireTimer
from engine.service.engine import Engine

TENANT = "acme"

FAULTY: dict[str, Any] = {
    "id": "faulty", "initialState": "open",
    "states": {
        "open": {"transitions": [
            {"id": "break", "trigger": "break", "target": "closed",
             "actions": [{"type": "set-context", "values": {"x": "trigger.content.a.b"}}]},
            {"id": "close", "trigger": "close", "target": "closed"}]},
        "closed": {},
    },
}


TIMED: dict[str, Any] = {
    "id": "timed", "initialState": "open",
    "states": {
        "open": {"timeouts": [{"id": "close", "after": "PT0S", "trigger": {"topic": "close"}}],
                 "transitions": [{"id": "close", "trigger": "close", "target": "closed"}]},
        "closed": {},
    },
}


def create(engine: Engine, instance_id: str, workflow: str = "expense-claim", **context: Any) -> Commit:
    context = context or {"claimant": "J George"}
    return engine.processor.create(CreateInstance(TENANT, instance_id, workflow, f"create-{instance_id}",
                                                  context=context)).commit


def trigger(engine: Engine, instance_id: str, topic: str, trigger_id: str, **content: Any) -> Commit:
    return engine.processor.trigger(TENANT, instance_id, Trigger(topic, trigger_id, content)).commit


def claim_lifecycle(engine: Engine, instance_id: str) -> None:
    """created, transitioned (4 times), completed, trigger-ignored, trigger-rejected."""
    create(engine, instance_id)
    trigger(engine, instance_id, "update", f"{instance_id}-u", amount=12.5)
    trigger(engine, instance_id, "nonsense", f"{instance_id}-n")  # ignored
    trigger(engine, instance_id, "submit", f"{instance_id}-s")
    trigger(engine, instance_id, "approve", f"{instance_id}-a", approver="K Boss")
    trigger(engine, instance_id, "pay", f"{instance_id}-p", paidAt="2025-01-02")  # transitioned + completed
    trigger(engine, instance_id, "pay", f"{instance_id}-p2", paidAt="2025-01-03")  # rejected


def admin(engine: Engine, instance_id: str, kind: EventType, **data: Any) -> Commit:
    """Append one administrative event without a trigger id (the design allows them; the processor's recoveries
    and terminations carry their command's id)."""
    before = engine.events.load(TENANT, instance_id)
    event = Event(instance_id, before.version + 1, kind, timestamp(datetime.now(UTC)), None, data)
    state = fold(before, [event])
    assert state is not None
    commit = engine.events.append(TENANT, instance_id, before.version, [event], state=state)
    on_commit = engine.processor.on_commit
    if on_commit is not None:
        on_commit(TENANT, commit)
    return commit


def every_event_type(engine: Engine) -> None:
    """At least one event of each of the twelve types, on four instances."""
    engine.catalog.put(TENANT, FAULTY)
    engine.catalog.put(TENANT, TIMED)
    claim_lifecycle(engine, "claim-1")
    create(engine, "f-1", "faulty", note="n")
    trigger(engine, "f-1", "break", "f-1-b")  # faulted: trigger.content.a is missing
    engine.processor.recover(TENANT, "f-1", mode=RecoveryMode.RESET, by="ops", reason="bad data",
                             recovery_id="rec-1", state="open", context_patch={"note": "fixed"})
    engine.processor.terminate(TENANT, "f-1", by="ops", reason="no longer needed", command_id="term-1")
    create(engine, "t-1", "timed")  # timer scheduled, then fired
    (timer,) = engine.events.load(TENANT, "t-1").timers
    engine.processor.handle(FireTimer(TENANT, "t-1", timer.id, timer.entry_sequence, timer.n, timer.trigger["id"],
                                      timer.due_at))
    create(engine, "t-2", "faulty", note="n")  # a trigger scheduled, then cancelled; migrated to version 2
    engine.processor.schedule_trigger(TENANT, "t-2", Trigger("close", "later"),
                                      due=datetime.now(UTC) + timedelta(days=1))
    engine.processor.cancel_scheduled(TENANT, "t-2", "later", by="ops", reason="not needed", command_id="c-1")
    engine.catalog.put(TENANT, {**FAULTY, "displayName": "Faulty, version 2"})
    engine.processor.migrate(TENANT, "t-2", 2, state_map={}, context_patch={"note": "moved"}, by="ops",
                             reason="version 2", command_id="m-1")
