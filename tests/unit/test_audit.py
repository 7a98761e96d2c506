"""Ignored and rejected triggers keep what was received: the content within the bound, else its digest and size,
and always the reason."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from engine.domain import (
    EventType,
    Services,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
    parse_definition,
)
from engine.domain.audit import audited_content, canonical_json

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DEFINITION = parse_definition({"id": "w", "initialState": "a", "states": {
    "a": {"transitions": [{"id": "go", "trigger": "go", "target": "b",
                           "conditions": [{"type": "expression", "expression": "trigger.content.ok == true"}]}]},
    "b": {}}}, default_registry(), version=1)


def decided(topic: str, content: Any, *, limit: int, finished: bool = False) -> dict[str, Any]:
    services = Services(audit_content_limit=limit)
    instance = decide_create(DEFINITION, "i", context={}, interests=[], trigger_id="c", now=NOW,
                             services=services).instance
    if finished:
        instance = decide_trigger(instance, DEFINITION, Trigger("go", "t0", {"ok": True}), now=NOW,
                                  services=services).instance
    [event] = decide_trigger(instance, DEFINITION, Trigger(topic, "t1", content), now=NOW, services=services).events
    assert event.type in (EventType.TRIGGER_IGNORED, EventType.TRIGGER_REJECTED)
    return dict(event.data)


def test_an_ignored_trigger_keeps_its_content_and_reason() -> None:
    data = decided("go", {"ok": False, "who": "K"}, limit=1000)
    assert data["content"] == {"ok": False, "who": "K"}
    assert data["reason"] == "no transition for topic 'go' from state 'a' has all its conditions true"
    assert "contentDigest" not in data


def test_a_rejected_trigger_keeps_its_content_and_reason() -> None:
    data = decided("go", ["anything", 1], limit=1000, finished=True)
    assert data["content"] == ["anything", 1]
    assert data["reason"] == "the instance is Complete and accepts no trigger"


def test_content_over_the_bound_is_kept_as_digest_and_size() -> None:
    content = {"blob": "x" * 500, "n": 1}
    data = decided("nothing-answers", content, limit=100)
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    assert "content" not in data
    assert data["contentSize"] == len(encoded) > 100
    assert data["contentDigest"] == "sha256:" + hashlib.sha256(encoded).hexdigest()
    assert data["reason"] == "state 'a' has no transition for topic 'nothing-answers'"


def test_the_bound_is_inclusive_and_the_digest_ignores_key_order() -> None:
    content = {"b": 1, "a": "é"}
    size = len(canonical_json(content))
    assert audited_content(content, size) == {"content": content}
    assert audited_content(content, size - 1)["contentSize"] == size
    assert audited_content({"a": "é", "b": 1}, 0) == audited_content(content, 0)
    assert audited_content(None, 4) == {"content": None}
