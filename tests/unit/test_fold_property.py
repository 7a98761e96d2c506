"""Property: folding the stored events of any sequence of triggers gives the live aggregate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain import (
    Event,
    Services,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
    fold,
    parse_definition,
)

DEFINITION = parse_definition({
    "id": "prop",
    "initialState": "open",
    "states": {
        "open": {
            "exitConditions": [{"type": "expression", "expression": "!has(trigger.content.block) || !trigger.content.block"}],
            "entryActions": [{"type": "set-context", "values": {"opened": "has(context.opened) ? context.opened + 1 : 1"}}],
            "transitions": [
                {"id": "note", "trigger": "note", "target": "open",
                 "actions": [{"type": "set-context", "values": {"note": "trigger.content.text"}}]},
                {"id": "divide", "trigger": "divide", "target": "open",
                 "actions": [{"type": "set-context", "values": {"q": "100 / trigger.content.n"}}]},
                {"id": "forget", "trigger": "forget", "target": "open",
                 "actions": [{"type": "set-context", "remove": ["note"]}]},
                {"id": "review", "trigger": "review", "target": "review",
                 "conditions": [{"type": "expression", "expression": "has(context.note)"}]},
                {"id": "close", "trigger": "close", "target": "closed"},
            ],
        },
        "review": {
            "entryConditions": [{"type": "expression", "expression": "!has(trigger.content.veto)"}],
            "transitions": [{"id": "reopen", "trigger": "reopen", "target": "open"},
                            {"id": "finish", "trigger": "close", "target": "closed"}],
        },
        "closed": {},
    },
}, default_registry(), version=1)

topics = st.sampled_from(["note", "divide", "forget", "review", "reopen", "close", "unknown"])
contents = st.fixed_dictionaries({}, optional={
    "text": st.text(max_size=8),
    "n": st.integers(min_value=-2, max_value=2),
    "block": st.booleans(),
    "veto": st.booleans(),
})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(topics, contents), max_size=25), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
def test_fold_of_stored_events_equals_the_live_aggregate(steps: list[tuple[str, dict[str, Any]]],
                                                         context: dict[str, int]) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decision = decide_create(DEFINITION, "p", context=context, interests=["x"], trigger_id="c", now=now,
                             services=Services())
    stored: list[Event] = list(decision.events)
    live = decision.instance
    for index, (topic, content) in enumerate(steps):
        now += timedelta(seconds=1)
        decision = decide_trigger(live, DEFINITION, Trigger(topic, f"t{index}", content), now=now,
                                  services=Services())
        assert decision.events, "every processed trigger leaves an event"
        stored.extend(decision.events)
        live = decision.instance
        assert fold(None, stored) == live
    assert [event.sequence for event in stored] == list(range(1, len(stored) + 1))
    assert live.version == len(stored)
    # Events survive their JSON shape unchanged (they are what the stores write).
    assert fold(None, [Event.from_dict(e.to_dict()) for e in stored]) == live
