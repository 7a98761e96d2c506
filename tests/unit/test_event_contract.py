"""The event schemas and the check the whole suite runs on every CloudEvent it builds (tests/event_contract.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent
from jsonschema import Draft202012Validator

from engine.feed import CloudEventMapper
from engine.feed.cloudevents import ALL_TYPES, CE_TYPES, commit_events
from engine.hosting.runtime import memory_engine
from engine.schemas import dataschema, event_schema, event_types
from tests.event_contract import CONTRACT, CheckedCloudEvent
from tests.feed.helpers import create, trigger

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_type_has_a_valid_schema_and_nothing_else_has_one() -> None:
    assert set(event_types()) == set(ALL_TYPES) == set(CE_TYPES.values())
    for event_type in event_types():
        schema = event_schema(event_type)
        Draft202012Validator.check_schema(schema)
        assert schema["title"] == event_type and schema["additionalProperties"] is False
        assert {"instanceId", "sequence", "workflowId", "newState", "newStatus", "newContext"} <= set(
            schema["required"])


def test_dataschema_names_the_served_path() -> None:
    assert dataschema("https://w.example/", "io.waymark.workflow.instance.created") == \
        "https://w.example/schemas/events/io.waymark.workflow.instance.created.json"


def test_the_suite_checks_the_events_it_builds(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put("acme", expense_claim)
    before = CONTRACT.checked
    commit = create(engine, "c1")
    events = commit_events("acme", commit, None, schema_base="https://w.example")
    assert all(isinstance(e, CheckedCloudEvent) for e in events)
    assert CONTRACT.checked == before + len(events)
    assert events[0].get_dataschema() == "https://w.example/schemas/events/io.waymark.workflow.instance.created.json"


def test_the_check_finds_a_broken_event() -> None:
    good = {"id": "i:1", "source": "/tenants/t/workflows/w/instances/i", "type": "io.waymark.workflow.instance.faulted",
            "subject": "i", "time": datetime.now(UTC), "datacontenttype": "application/json", "sequence": 1,
            "tenantid": "t", "dataschema": "http://x/schemas/events/io.waymark.workflow.instance.faulted.json"}
    data = {"instanceId": "i", "sequence": 1, "workflowId": "w", "workflowVersion": 1, "triggerId": None,
            "transitionId": None, "previousState": "a", "newState": "a", "previousStatus": "Waiting",
            "newStatus": "Faulted", "previousContext": {}, "newContext": {},
            "fault": {"where": "$", "errorType": "X", "message": "m"}}
    assert CONTRACT.problems(CloudEvent(good, data)) == []
    broken = CloudEvent({**good, "id": "i:2", "dataschema": "http://x/other.json"},
                        {**data, "fault": {"where": "$"}, "surprise": 1})
    found = CONTRACT.problems(broken)
    assert any("'errorType' is a required property" in p for p in found)
    assert any("surprise" in p for p in found)
    assert any(p.startswith("dataschema") for p in found)
    assert any(p.startswith("id ") for p in found)


def test_ignored_and_rejected_triggers_carry_what_was_received(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put("acme", expense_claim)
    create(engine, "c1")
    ignored = trigger(engine, "c1", "no-such-topic", "t-ignored", note="what we got")
    trigger(engine, "c1", "abandon", "t-abandon")
    rejected = trigger(engine, "c1", "update", "t-rejected", amount=5)
    for commit, kind in ((ignored, "trigger-ignored"), (rejected, "trigger-rejected")):
        [event] = CloudEventMapper(engine.events).events("acme", commit)
        assert event.get_type() == f"io.waymark.workflow.instance.{kind}"
        assert event.get_data()["content"] == commit.events[0].data["content"]
        assert event.get_data()["reason"] and CONTRACT.problems(event) == []
    schema = Draft202012Validator(event_schema("io.waymark.workflow.instance.trigger-ignored"))
    digest = {"contentDigest": "sha256:" + "0" * 64, "contentSize": 40000}
    assert not schema.is_valid({**ignored_data(engine), "content": 1, **digest})  # never both
    assert schema.is_valid({**ignored_data(engine), **digest})
    assert not schema.is_valid({**ignored_data(engine), "contentDigest": digest["contentDigest"]})  # size too


def ignored_data(engine: Any) -> dict[str, Any]:
    commit = engine.events.find_trigger("acme", "c1", "t-ignored")
    [event] = CloudEventMapper(engine.events).events("acme", commit)
    data: dict[str, Any] = dict(event.get_data())
    data.pop("content")
    return data


@pytest.mark.parametrize("event_type", sorted(ALL_TYPES))
def test_the_asyncapi_document_lists_every_type(event_type: str) -> None:
    document = json.loads((ROOT / "engine" / "schemas" / "asyncapi.json").read_text())
    names = {message.get("name") for message in document["components"]["messages"].values()}
    assert event_type in names
