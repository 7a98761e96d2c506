"""The mapping of stored events to CloudEvents: attributes, self-contained data, previous/new found exactly."""

from __future__ import annotations

import json
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from engine.domain import EventType, RecoveryMode, fold
from engine.feed import CloudEventMapper, from_batch, to_batch
from engine.feed.cloudevents import ALL_TYPES, binary_message, commit_events, structured_message
from engine.hosting.runtime import memory_engine
from tests.feed.helpers import FAULTY, TENANT, admin, create, every_event_type, trigger


def _all(engine: Any) -> list[Any]:
    mapper = CloudEventMapper(engine.events)
    commits = engine.events.read_feed(TENANT, limit=1000)
    return [event for group in mapper.page(TENANT, commits) for event in group]


def test_every_event_type_has_its_cloudevent_type_and_attributes(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, expense_claim)
    every_event_type(engine)
    events = _all(engine)
    assert {e.get_type() for e in events} == ALL_TYPES
    first = events[0]
    assert first.get_id() == "claim-1:1"
    assert first.get_source() == "/tenants/acme/workflows/expense-claim/instances/claim-1"
    assert first.get_type() == "io.waymark.workflow.instance.created"
    assert first.get_subject() == "claim-1"
    assert first.get_datacontenttype() == "application/json"
    assert first.get_extension("sequence") == 1
    assert first.get_extension("tenantid") == TENANT
    assert first.get_time() is not None and first.get_time().tzinfo is not None
    stored = engine.events.read(TENANT, "claim-1")
    assert first.get_time().isoformat().replace("+00:00", "Z") == stored[0].at
    # ids are unique and sequences gapless per instance
    assert len({e.get_id() for e in events}) == len(events)


def test_data_is_self_contained(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, expense_claim)
    every_event_type(engine)
    by_id = {e.get_id(): e.get_data() for e in _all(engine)}

    created = by_id["claim-1:1"]
    assert created["previousState"] is None and created["previousStatus"] is None
    assert created["previousContext"] is None
    assert created["newState"] == "draft" and created["newStatus"] == "Waiting"
    assert created["newContext"] == {"claimant": "J George"}
    assert created["workflowId"] == "expense-claim" and created["workflowVersion"] == 1
    assert created["triggerId"] == "create-claim-1"

    update = by_id["claim-1:2"]
    assert update["transitionId"] == "update" and update["topic"] == "update"
    assert update["previousContext"] == {"claimant": "J George"}
    assert update["newContext"] == {"claimant": "J George", "amount": 12.5}

    ignored = by_id["claim-1:3"]
    assert ignored["topic"] == "nonsense" and "has no transition" in ignored["reason"]
    assert ignored["previousState"] == ignored["newState"] == "draft"

    # one commit, two events: each has its own before and after
    paid, completed = by_id["claim-1:6"], by_id["claim-1:7"]
    assert (paid["previousState"], paid["newState"]) == ("awaiting-payment", "paid")
    assert (paid["previousStatus"], paid["newStatus"]) == ("Waiting", "Waiting")
    assert (completed["previousStatus"], completed["newStatus"]) == ("Waiting", "Complete")
    assert completed["transitionId"] == "pay" and completed["triggerId"] == "claim-1-p"

    rejected = by_id["claim-1:8"]
    assert rejected["topic"] == "pay" and "Complete" in rejected["reason"]

    faulted = by_id["f-1:2"]
    assert faulted["fault"]["where"].startswith("$.states.open.transitions")
    assert faulted["fault"]["errorType"] and faulted["fault"]["message"]
    assert faulted["transitionId"] == "break"
    assert (faulted["previousStatus"], faulted["newStatus"]) == ("Waiting", "Faulted")

    recovered = by_id["f-1:3"]
    assert (recovered["by"], recovered["reason"], recovered["mode"]) == ("ops", "bad data", "reset")
    assert recovered["previousContext"] == {"note": "n"} and recovered["newContext"] == {"note": "fixed"}
    assert (recovered["previousStatus"], recovered["newStatus"]) == ("Faulted", "Waiting")
    assert recovered["triggerId"] == "rec-1"

    terminated = by_id["f-1:4"]
    assert (terminated["by"], terminated["reason"]) == ("ops", "no longer needed")
    assert (terminated["previousStatus"], terminated["newStatus"]) == ("Waiting", "Terminated")
    json.dumps(by_id)  # all of it is JSON


def test_previous_instance_is_exact_whichever_way_it_is_found(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, expense_claim)
    create(engine, "c")
    for n in range(5):
        trigger(engine, "c", "update", f"u{n}", amount=n)  # overwrites `amount`: not undoable from the after state
    admin(engine, "c", EventType.TERMINATED, by="ops", reason="test")
    admin(engine, "c", EventType.RECOVERED, state="draft", context={"claimant": "X"}, by="ops", reason="r",
          mode="reset")
    trigger(engine, "c", "update", "after-admin", amount=99)
    history = engine.events.read(TENANT, "c")
    commits = engine.events.read_feed(TENANT, limit=100)

    cold = CloudEventMapper(engine.events)  # nothing cached: every commit is looked up in the store
    for commit in commits:
        truth = fold(None, history[:commit.first_sequence - 1])
        assert cold.before(TENANT, commit) == truth
    # by trigger id for commits after a triggered one; by folding only after the two events without one
    assert (cold.lookups, cold.folds) == (len(commits) - 1, 2)

    warm = CloudEventMapper(engine.events)
    for commit in commits:
        warm.events(TENANT, commit)
    assert warm.lookups == 0  # the live path: each commit finds the previous one's state in the cache


def test_batch_and_http_modes_round_trip_through_the_sdk(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, expense_claim)
    commit = create(engine, "c")
    [event] = commit_events(TENANT, commit, None)

    batch = from_batch(to_batch([event, event]))
    assert [e.get_id() for e in batch] == ["c:1", "c:1"]
    assert batch[0].get_data() == event.get_data()
    assert batch[0].get_extension("sequence") == 1

    structured = structured_message(event)
    assert structured.headers["content-type"] == "application/cloudevents+json"
    parsed = from_http(HTTPMessage(structured.headers, structured.body), JSONFormat())
    assert parsed.get_id() == "c:1" and parsed.get_data() == event.get_data()

    binary = binary_message(event)
    assert binary.headers["ce-id"] == "c:1" and binary.headers["content-type"] == "application/json"
    parsed = from_http(HTTPMessage(binary.headers, binary.body), JSONFormat())
    assert parsed.get_type() == event.get_type() and parsed.get_data() == event.get_data()
    assert parsed.get_extension("sequence") == "1"  # binary mode carries attributes as header strings
    assert json.loads(binary.body)["sequence"] == 1  # … and data repeats it, covered by the signature


def test_the_public_surface() -> None:
    import engine.feed

    assert sorted(engine.feed.__all__) == sorted(set(engine.feed.__all__))
    for name in engine.feed.__all__:
        assert getattr(engine.feed, name) is not None
    assert {"ChangeFeed", "Dispatcher", "Sweeper", "WebhookPublisher", "EventGridPublisher",
            "SqliteSubscriptionStore", "verify_signature"} <= set(engine.feed.__all__)


def test_previous_instance_after_a_retry_recovery(expense_claim: dict[str, Any]) -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, FAULTY)
    create(engine, "f", "faulty", note="n")
    trigger(engine, "f", "break", "f-b")  # faulted
    retried = engine.processor.recover(TENANT, "f", mode=RecoveryMode.RETRY, by="ops", reason="again",
                                       recovery_id="rec-1").commit
    assert [e.type for e in retried.events] == [EventType.RECOVERED, EventType.FAULTED]  # faults again
    assert retried.events[-1].trigger_id == "f-b"  # the retried trigger's own id
    engine.processor.recover(TENANT, "f", mode=RecoveryMode.RESET, by="ops", reason="skip it", recovery_id="rec-2",
                             context_patch={"note": None})
    trigger(engine, "f", "close", "f-c")
    history = engine.events.read(TENANT, "f")
    commits = engine.events.read_feed(TENANT, limit=100)
    cold = CloudEventMapper(engine.events)
    for commit in commits:
        assert cold.before(TENANT, commit) == fold(None, history[:commit.first_sequence - 1])
    assert cold.folds == 1  # only the commit after the retry: its last event leads to the older faulted commit
    events = {e.get_id(): e.get_data() for group in CloudEventMapper(engine.events).page(TENANT, commits)
              for e in group}
    assert events["f:3"]["mode"] == "retry" and events["f:3"]["newStatus"] == "Waiting"
    assert events["f:4"]["triggerId"] == "f-b" and events["f:4"]["newStatus"] == "Faulted"
    assert events["f:5"]["previousContext"] == {"note": "n"} and events["f:5"]["newContext"] == {}
