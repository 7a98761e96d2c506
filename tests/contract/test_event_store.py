"""The event-store contract (DESIGN.md, "Event store contract"), run against every adapter in conftest.py.

Events are never written by hand: the real domain decides them from a tiny workflow, so every commit here is
one the engine could have made. Tests never assert on wall-clock time.
"""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.domain import (
    Commit,
    ConcurrencyConflict,
    Decision,
    DuplicateTrigger,
    Event,
    EventType,
    Instance,
    InstanceNotFound,
    Services,
    Status,
    StoreUnavailable,
    TenantNotFound,
    Trigger,
    WorkflowDefinition,
    decide_create,
    decide_trigger,
    default_registry,
    fold,
    parse_definition,
    timestamp,
)
from engine.stores.base import EventStore, load_follows
from engine.stores.sqlite import SqliteEventStore

if TYPE_CHECKING:
    from tests.contract.conftest import Backend

A, B = "tenant-a", "tenant-b"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SERVICES = Services()

# open --tick--> open (count + 1), open --move--> busy --back--> open, open|busy --finish--> done (terminal).
COUNTER_DOCUMENT: dict[str, Any] = {
    "id": "counter",
    "initialState": "open",
    "states": {
        "open": {"transitions": [
            {"id": "tick", "trigger": "tick", "target": "open",
             "actions": [{"type": "set-context", "values": {"count": "context.count + 1"}}]},
            {"id": "move", "trigger": "move", "target": "busy"},
            {"id": "finish", "trigger": "finish", "target": "done"},
        ]},
        "busy": {"transitions": [
            {"id": "back", "trigger": "back", "target": "open"},
            {"id": "finish-busy", "trigger": "finish", "target": "done"},
        ]},
        "done": {},
    },
}
WORKFLOWS: dict[str, WorkflowDefinition] = {
    workflow_id: parse_definition({**COUNTER_DOCUMENT, "id": workflow_id}, default_registry(), version=1)
    for workflow_id in ("counter", "other")
}


# ---------------------------------------------------------------------------------------------- helpers

def created(instance_id: str, *, workflow: str = "counter", interests: Iterable[str] = (),
            context: dict[str, Any] | None = None, trigger_id: str | None = None, now: datetime = T0) -> Decision:
    return decide_create(WORKFLOWS[workflow], instance_id, context={"count": 0, **(context or {})},
                         interests=interests, trigger_id=trigger_id or f"create-{instance_id}", now=now,
                         services=SERVICES)


def triggered(instance: Instance, topic: str, trigger_id: str, *, now: datetime = T0) -> Decision:
    return decide_trigger(instance, WORKFLOWS[instance.workflow_id], Trigger(topic, trigger_id), now=now,
                          services=SERVICES)


def create(store: EventStore, tenant: str, instance_id: str, **options: Any) -> Commit:
    decision = created(instance_id, **options)
    return store.append(tenant, instance_id, 0, decision.events, state=decision.instance)


def send(store: EventStore, tenant: str, instance_id: str, topic: str, trigger_id: str, *,
         now: datetime = T0) -> Commit:
    instance = store.load(tenant, instance_id)
    decision = triggered(instance, topic, trigger_id, now=now)
    return store.append(tenant, instance_id, instance.version, decision.events, state=decision.instance)


def tick_all(store: EventStore, tenant: str, instance_id: str, trigger_ids: Sequence[str],
             start: Any = None) -> int:
    """Apply a `tick` per trigger id, reloading and retrying after each lost race; the number of races lost."""
    if start is not None:
        start.wait(60)
    conflicts = 0
    for trigger_id in trigger_ids:
        while True:
            instance = store.load(tenant, instance_id)
            decision = triggered(instance, "tick", trigger_id)
            try:
                store.append(tenant, instance_id, instance.version, decision.events, state=decision.instance)
            except ConcurrencyConflict:
                conflicts += 1
                continue
            break
    return conflicts


def snapshot(store: EventStore, tenant: str, instance_id: str) -> tuple[Any, ...]:
    """Everything the store says about an instance and its tenant, to show a failed call wrote nothing."""
    return (store.load(tenant, instance_id), store.read(tenant, instance_id), store.read_feed(tenant, limit=1000),
            store.undispatched(tenant, limit=1000))


def all_pages(store: EventStore, tenant: str, *, limit: int, **filters: Any) -> list[Instance]:
    items: list[Instance] = []
    continuation = None
    for _ in range(1000):
        page = store.list_instances(tenant, limit=limit, continuation=continuation, **filters)
        assert len(page.items) <= limit
        items.extend(page.items)
        continuation = page.continuation
        if continuation is None:
            return items
    raise AssertionError("list_instances never ended")


# ---------------------------------------------------------------------------------------------- append, load, read

def test_append_then_load_and_read(event_store: EventStore) -> None:
    decision = created("i-1", context={"customer": "c-9"}, interests=["order:7"])
    commit = event_store.append(A, "i-1", 0, decision.events, state=decision.instance)

    assert commit.instance_id == "i-1"
    assert commit.events == decision.events
    assert commit.state == decision.instance
    assert (commit.first_sequence, commit.last_sequence, commit.trigger_id) == (1, 1, "create-i-1")
    assert commit.position is not None and not commit.dispatched
    assert event_store.load(A, "i-1") == decision.instance
    assert event_store.read(A, "i-1") == list(decision.events)

    second = send(event_store, A, "i-1", "tick", "t-1")
    loaded = event_store.load(A, "i-1")
    assert loaded == second.state
    assert (loaded.version, loaded.context["count"], loaded.context["customer"]) == (2, 1, "c-9")
    assert event_store.read(A, "i-1") == [*decision.events, *second.events]
    assert second.position is not None and second.position > commit.position


def test_an_unknown_instance_is_not_found_and_reads_as_empty(event_store: EventStore) -> None:
    with pytest.raises(InstanceNotFound) as caught:
        event_store.load(A, "nobody")
    assert (caught.value.tenant, caught.value.instance_id) == (A, "nobody")
    assert event_store.read(A, "nobody") == []
    assert event_store.find_trigger(A, "nobody", "t-1") is None


def test_a_commit_of_several_events_is_written_whole(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    commit = send(event_store, A, "i-1", "finish", "t-finish")

    assert [event.type for event in commit.events] == [EventType.TRANSITION_APPLIED, EventType.COMPLETED]
    assert event_store.read(A, "i-1", after=1) == list(commit.events)
    assert event_store.load(A, "i-1").status is Status.COMPLETE
    assert event_store.find_trigger(A, "i-1", "t-finish") == commit
    assert event_store.read_feed(A)[-1] == commit


def test_a_stale_append_conflicts_and_writes_nothing(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    stale = event_store.load(A, "i-1")
    send(event_store, A, "i-1", "tick", "t-1")
    before = snapshot(event_store, A, "i-1")

    decision = triggered(stale, "finish", "t-late")  # two events, numbered from the stale version
    assert len(decision.events) == 2
    with pytest.raises(ConcurrencyConflict) as caught:
        event_store.append(A, "i-1", stale.version, decision.events, state=decision.instance)

    assert (caught.value.tenant, caught.value.instance_id, caught.value.expected_version) == (A, "i-1", 1)
    assert snapshot(event_store, A, "i-1") == before
    assert event_store.find_trigger(A, "i-1", "t-late") is None


def test_an_expected_version_ahead_of_the_stream_conflicts(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    before = snapshot(event_store, A, "i-1")
    ahead = replace(event_store.load(A, "i-1"), version=5)
    decision = triggered(ahead, "tick", "t-ahead")
    with pytest.raises(ConcurrencyConflict):
        event_store.append(A, "i-1", 5, decision.events, state=decision.instance)
    assert snapshot(event_store, A, "i-1") == before


def test_creating_an_existing_instance_conflicts(event_store: EventStore) -> None:
    create(event_store, A, "i-1", context={"first": True})
    before = snapshot(event_store, A, "i-1")
    again = created("i-1", context={"second": True}, trigger_id="create-again")
    with pytest.raises(ConcurrencyConflict):
        event_store.append(A, "i-1", 0, again.events, state=again.instance)
    assert snapshot(event_store, A, "i-1") == before
    assert event_store.load(A, "i-1").context == {"count": 0, "first": True}


def test_sequences_are_gapless(event_store: EventStore) -> None:
    commits = [create(event_store, A, "i-1")]
    for n in range(5):
        commits.append(send(event_store, A, "i-1", "move" if n % 2 == 0 else "back", f"t-{n}"))
    commits.append(send(event_store, A, "i-1", "finish", "t-finish"))
    commits.append(send(event_store, A, "i-1", "tick", "t-after-finish"))  # rejected: recorded all the same

    for previous, commit in itertools.pairwise(commits):
        assert commit.first_sequence == previous.last_sequence + 1
    events = event_store.read(A, "i-1")
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert events[-1].type is EventType.TRIGGER_REJECTED
    assert event_store.load(A, "i-1").version == len(events) == 9


def test_a_malformed_commit_is_refused(event_store: EventStore) -> None:
    decision = created("i-1")
    with pytest.raises(ValueError):
        event_store.append(A, "i-1", 0, [], state=decision.instance)
    with pytest.raises(ValueError):  # events numbered from 1 given as following version 3
        event_store.append(A, "i-1", 3, decision.events, state=decision.instance)
    with pytest.raises(ValueError):  # events of another instance
        event_store.append(A, "i-2", 0, decision.events, state=decision.instance)
    assert event_store.read(A, "i-1") == []


# ---------------------------------------------------------------------------------------------- idempotency

def test_a_recorded_trigger_is_not_applied_twice(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    first = send(event_store, A, "i-1", "tick", "t-1")
    before = snapshot(event_store, A, "i-1")

    with pytest.raises(DuplicateTrigger) as caught:
        send(event_store, A, "i-1", "tick", "t-1")  # decided from the current version: only the id repeats
    assert (caught.value.tenant, caught.value.instance_id, caught.value.trigger_id) == (A, "i-1", "t-1")
    assert snapshot(event_store, A, "i-1") == before
    assert event_store.find_trigger(A, "i-1", "t-1") == first


def test_a_recorded_trigger_wins_over_a_stale_version(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    stale = event_store.load(A, "i-1")
    send(event_store, A, "i-1", "tick", "t-1")
    send(event_store, A, "i-1", "tick", "t-2")
    before = snapshot(event_store, A, "i-1")

    redelivered = triggered(stale, "tick", "t-1")
    with pytest.raises(DuplicateTrigger):
        event_store.append(A, "i-1", stale.version, redelivered.events, state=redelivered.instance)
    assert snapshot(event_store, A, "i-1") == before


def test_find_trigger_returns_the_commit_the_trigger_made(event_store: EventStore) -> None:
    creation = create(event_store, A, "i-1")
    ticked = send(event_store, A, "i-1", "tick", "t-1")
    finished = send(event_store, A, "i-1", "finish", "t-2")

    assert event_store.find_trigger(A, "i-1", "create-i-1") == creation
    assert event_store.find_trigger(A, "i-1", "t-1") == ticked
    assert event_store.find_trigger(A, "i-1", "t-2") == finished
    assert event_store.find_trigger(A, "i-1", "t-3") is None
    assert event_store.find_trigger(A, "i-2", "t-1") is None


# ---------------------------------------------------------------------------------------------- reading

def test_read_after_and_limit(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    for n in range(3):
        send(event_store, A, "i-1", "tick", f"t-{n}")
    send(event_store, A, "i-1", "finish", "t-finish")  # events 5 and 6, one commit
    events = event_store.read(A, "i-1")
    assert [event.sequence for event in events] == [1, 2, 3, 4, 5, 6]

    assert event_store.read(A, "i-1", after=4) == events[4:]
    assert event_store.read(A, "i-1", after=5) == events[5:]  # from inside a commit
    assert event_store.read(A, "i-1", limit=2) == events[:2]
    assert event_store.read(A, "i-1", after=4, limit=1) == events[4:5]
    assert event_store.read(A, "i-1", after=2, limit=100) == events[2:]
    assert event_store.read(A, "i-1", after=6) == []
    assert event_store.read(A, "i-1", after=60) == []


def test_a_long_history_loads_as_the_fold_of_its_events(event_store: EventStore) -> None:
    create(event_store, A, "i-1")
    instance = event_store.load(A, "i-1")
    for n in range(1999):
        decision = triggered(instance, "tick", f"t-{n}")
        event_store.append(A, "i-1", instance.version, decision.events, state=decision.instance)
        instance = decision.instance

    events = event_store.read(A, "i-1")
    assert len(events) == 2000
    loaded = event_store.load(A, "i-1")
    assert loaded == fold(None, events)
    assert (loaded.version, loaded.context["count"]) == (2000, 1999)
    assert event_store.read(A, "i-1", after=1990, limit=5) == events[1990:1995]


def test_another_client_sees_what_one_appended(backend: Backend) -> None:
    first, second = backend.event_store(), backend.event_store()
    create(first, A, "i-1")
    assert second.load(A, "i-1").version == 1
    send(first, A, "i-1", "tick", "t-1")
    send(first, A, "i-1", "tick", "t-2")
    assert second.load(A, "i-1") == first.load(A, "i-1")
    assert second.load(A, "i-1").context["count"] == 2
    send(second, A, "i-1", "finish", "t-3")
    assert first.load(A, "i-1").status is Status.COMPLETE


def test_a_load_that_follows_find_trigger_answers_the_head_it_read(backend: Backend) -> None:
    """The processor's find-then-load (base.load_follows) may be answered from one read, or from none (a head the
    store holds); it never answers a load of another instance, nor one outside it, with what find_trigger read.
    A head another writer has moved past since is possible only there, and an append decided on it is refused."""
    first, second = backend.event_store(), backend.event_store()
    create(first, A, "i-1")
    create(first, A, "i-2")
    send(first, A, "i-1", "tick", "t-1")
    with load_follows():
        assert first.find_trigger(A, "i-1", "t-2") is None
        assert first.load(A, "i-1").version == 2
        assert first.find_trigger(A, "i-1", "t-1") is not None
        assert first.find_trigger(A, "nobody", "t-1") is None
        with pytest.raises(InstanceNotFound):
            first.load(A, "nobody")
        assert first.find_trigger(A, "i-1", "t-2") is None
        assert first.load(A, "i-2").id == "i-2"
    with load_follows():
        assert first.find_trigger(A, "i-1", "t-2") is None
    send(second, A, "i-1", "tick", "t-2")
    assert first.load(A, "i-1").version == 3  # outside: the store is read again
    send(second, A, "i-1", "tick", "t-3")
    with load_follows():
        assert first.find_trigger(A, "i-1", "t-4") is None
        loaded = first.load(A, "i-1")
    current = second.load(A, "i-1")
    assert (current.version, current.context["count"]) == (4, 3)
    assert loaded == current or loaded.version == 3  # read again, or the head `first` held
    if loaded != current:  # deciding on the held head loses the race: nothing is written
        decision = triggered(loaded, "tick", "t-4")
        with pytest.raises(ConcurrencyConflict):
            first.append(A, "i-1", loaded.version, decision.events, state=decision.instance)
        assert first.load(A, "i-1") == current  # outside load_follows: read again
        assert [e.trigger_id for e in second.read(A, "i-1")][-2:] == ["t-2", "t-3"]


def test_events_and_states_round_trip_exactly(backend: Backend) -> None:
    content = {"text": "naïve ☃ \ud800", "nested": {"list": [1, 2.5, None, True, "x"]}, "big": 2**53 + 1}
    writer, reader = backend.event_store(), backend.event_store()
    commit = create(writer, A, "i-1", context={"payload": content})
    instance = writer.load(A, "i-1")
    # `finish` runs no expression: CEL cannot take a lone surrogate, a store must.
    decision = decide_trigger(instance, WORKFLOWS["counter"], Trigger("finish", "t-1", content), now=T0,
                              services=SERVICES)
    writer.append(A, "i-1", 1, decision.events, state=decision.instance)

    events: list[Event] = reader.read(A, "i-1")
    assert events == [*commit.events, *decision.events]
    assert events[1].data["content"] == content
    assert reader.load(A, "i-1") == decision.instance
    assert reader.load(A, "i-1").context["payload"] == content
    assert reader.read_feed(A)[1].state == decision.instance


# ---------------------------------------------------------------------------------------------- tenants

def test_tenants_are_siloed(event_store: EventStore) -> None:
    in_a = create(event_store, A, "same", context={"owner": "a"}, interests=["subject:a", "subject:both"])
    in_b = create(event_store, B, "same", workflow="other", context={"owner": "b"},
                  interests=["subject:b", "subject:both"], trigger_id="create-b")
    send(event_store, A, "same", "tick", "t-a")
    create(event_store, A, "only-a")

    assert event_store.load(A, "same").context == {"count": 1, "owner": "a"}
    assert event_store.load(B, "same") == in_b.state
    assert [event.trigger_id for event in event_store.read(B, "same")] == ["create-b"]
    with pytest.raises(InstanceNotFound):
        event_store.load(B, "only-a")
    assert event_store.read(B, "only-a") == []
    assert event_store.find_trigger(B, "same", "t-a") is None
    assert event_store.find_trigger(A, "same", "create-b") is None

    assert [i.id for i in event_store.list_instances(A).items] == ["only-a", "same"]
    assert event_store.list_instances(B).items == [in_b.state]
    assert event_store.list_instances(A, workflow_id="other").items == []
    assert event_store.interested(A, ["subject:b"]) == []
    assert event_store.interested(B, ["subject:a", "subject:both"]) == ["same"]
    assert [c.instance_id for c in event_store.read_feed(B)] == ["same"]
    assert [len(c.events) for c in event_store.read_feed(A)] == [1, 1, 1]

    # Positions are per tenant; marking one tenant's commits dispatched leaves the other's alone.
    event_store.mark_dispatched(A, [c.position for c in event_store.undispatched(A) if c.position is not None])
    assert event_store.undispatched(A) == []
    assert [c.position for c in event_store.undispatched(B)] == [in_b.position]
    assert in_a.position is not None


# ---------------------------------------------------------------------------------------------- listing

def test_list_instances_filters_and_pages(event_store: EventStore) -> None:
    ids = [f"i-{n:02d}" for n in range(23)]
    for n, instance_id in enumerate(reversed(ids)):  # created out of id order
        create(event_store, A, instance_id, workflow="counter" if n % 2 else "other")
        if n % 3 == 0:
            send(event_store, A, instance_id, "move", f"m-{n}")
        if n % 5 == 0:
            send(event_store, A, instance_id, "finish", f"f-{n}")
    create(event_store, B, "i-99")
    everything = {instance_id: event_store.load(A, instance_id) for instance_id in ids}

    def expected(**filters: str) -> list[Instance]:
        return [instance for _, instance in sorted(everything.items())
                if all(getattr(instance, name) == value for name, value in filters.items())]

    for filters in ({}, {"status": "Complete"}, {"status": "Waiting"}, {"workflow_id": "other"},
                    {"state": "busy"}, {"workflow_id": "counter", "state": "open"},
                    {"status": "Waiting", "state": "busy", "workflow_id": "other"}, {"state": "nowhere"}):
        want = expected(**filters)
        assert want or filters == {"state": "nowhere"}
        for limit in (1, 4, 100):
            assert all_pages(event_store, A, limit=limit, **filters) == want, (filters, limit)

    first = event_store.list_instances(A, limit=5)
    assert [i.id for i in first.items] == ids[:5]
    assert first.continuation is not None
    second = event_store.list_instances(A, limit=5, continuation=first.continuation)
    assert [i.id for i in second.items] == ids[5:10]


def test_interested_follows_every_commit(event_store: EventStore) -> None:
    def check() -> None:
        instances = event_store.list_instances(A, limit=1000).items
        for subjects in (["s:1"], ["s:2"], ["s:3"], ["s:1", "s:3"], ["s:1", "s:2", "s:3", "s:9"], []):
            want = sorted(i.id for i in instances if set(i.interests) & set(subjects))
            assert event_store.interested(A, subjects) == want, subjects

    create(event_store, A, "i-1", interests=["s:1", "s:2"])
    check()
    create(event_store, A, "i-2", interests=["s:2"])
    check()
    create(event_store, A, "i-0")
    check()
    send(event_store, A, "i-1", "tick", "t-1")
    check()
    send(event_store, A, "i-2", "finish", "t-2")
    check()

    # The index follows the state each commit carries, also when its interests change.
    instance = event_store.load(A, "i-1")
    decision = triggered(instance, "tick", "t-3")
    event_store.append(A, "i-1", instance.version, decision.events,
                       state=replace(decision.instance, interests=("s:2", "s:3")))
    check()
    assert event_store.interested(A, ["s:1"]) == []
    instance = event_store.load(A, "i-2")
    decision = triggered(instance, "tick", "t-4")
    event_store.append(A, "i-2", instance.version, decision.events, state=replace(decision.instance, interests=()))
    check()
    assert event_store.interested(A, ["s:2", "s:3"]) == ["i-1"]


# ---------------------------------------------------------------------------------------------- feed and outbox

def test_read_feed_is_in_commit_order(event_store: EventStore) -> None:
    appended = [create(event_store, A, "i-1"), create(event_store, A, "i-2"),
                send(event_store, A, "i-1", "tick", "t-1"), create(event_store, A, "i-0"),
                send(event_store, A, "i-2", "finish", "t-2"), send(event_store, A, "i-1", "tick", "t-3")]
    feed = event_store.read_feed(A)
    assert feed == appended
    positions = [c.position for c in feed if c.position is not None]
    assert len(positions) == 6 and positions == sorted(set(positions))

    assert event_store.read_feed(A, after=positions[2]) == appended[3:]
    assert event_store.read_feed(A, after=positions[2], limit=2) == appended[3:5]
    assert event_store.read_feed(A, limit=1) == appended[:1]
    assert event_store.read_feed(A, after=positions[-1]) == []


def test_undispatched_and_mark_dispatched(event_store: EventStore) -> None:
    minute = timedelta(minutes=1)
    commits = [create(event_store, A, "i-1", now=T0)]
    commits += [send(event_store, A, "i-1", "tick", f"t-{n}", now=T0 + n * minute) for n in range(1, 5)]
    positions = [c.position for c in commits if c.position is not None]
    assert len(positions) == 5

    assert event_store.undispatched(A) == commits
    event_store.mark_dispatched(A, [positions[1], positions[3]])
    assert event_store.undispatched(A) == [commits[0], commits[2], commits[4]]
    assert event_store.undispatched(A, limit=2) == [commits[0], commits[2]]
    assert [c.dispatched for c in event_store.read_feed(A)] == [False, True, False, True, False]
    found = event_store.find_trigger(A, "i-1", "t-1")
    assert found is not None and found.dispatched and found.position == positions[1]

    # Only commits whose events are older than the given time (T0 + 2 minutes is not older than itself).
    assert event_store.undispatched(A, committed_before=timestamp(T0 + 2 * minute)) == [commits[0]]
    assert event_store.undispatched(A, committed_before=timestamp(T0 + 10 * minute)) == [
        commits[0], commits[2], commits[4]]
    assert event_store.undispatched(A, committed_before=timestamp(T0)) == []

    event_store.mark_dispatched(A, [positions[1]])  # again: no harm
    event_store.mark_dispatched(A, [])
    event_store.mark_dispatched(A, [positions[-1] + 100])  # unknown: ignored
    event_store.mark_dispatched(A, positions)
    assert event_store.undispatched(A) == []
    assert all(c.dispatched for c in event_store.read_feed(A))


def test_ping(event_store: EventStore) -> None:
    event_store.ping(A)
    create(event_store, A, "i-1")
    event_store.ping(A)


# ---------------------------------------------------------------------------------------------- concurrency

def test_racing_threads_append_each_trigger_once_without_gaps(backend: Backend) -> None:
    stores = [backend.event_store(), backend.event_store()]  # two clients as well as four threads
    create(stores[0], A, "race")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            tick_all(stores[n % 2], A, "race", [f"w{n}-{k}" for k in range(8)], start)
        except BaseException as e:  # any error other than the conflicts tick_all retries fails the test
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert_raced(stores[0], [f"w{n}-{k}" for n in range(4) for k in range(8)])


def assert_raced(store: EventStore, trigger_ids: list[str]) -> None:
    events = store.read(A, "race")
    assert [event.sequence for event in events] == list(range(1, len(trigger_ids) + 2))
    assert sorted(event.trigger_id or "" for event in events[1:]) == sorted(trigger_ids)
    instance = store.load(A, "race")
    assert (instance.version, instance.context["count"]) == (len(trigger_ids) + 1, len(trigger_ids))  # no lost update
    for trigger_id in trigger_ids:
        found = store.find_trigger(A, "race", trigger_id)
        assert found is not None and [e.trigger_id for e in found.events] == [trigger_id]


def race_in_process(data_dir: str, trigger_ids: list[str], start: Any, results: Any) -> None:
    """Runs in a spawned process: the same loop as the threads, against its own store."""
    try:
        with SqliteEventStore(Path(data_dir)) as store:
            conflicts = tick_all(store, A, "race", trigger_ids, start)
        results.put(("ok", conflicts))
    except BaseException as e:
        results.put(("error", repr(e)))


def test_sqlite_racing_processes_append_each_trigger_once_without_gaps(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "race")
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(2)
        results = context.Queue()
        batches = [[f"p{n}-{k}" for k in range(16)] for n in range(2)]
        processes = [context.Process(target=race_in_process, args=(str(tmp_path), batch, start, results))
                     for batch in batches]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=90) for _ in processes]
        for process in processes:
            process.join(30)
        assert [outcome for outcome, _ in outcomes] == ["ok", "ok"], outcomes
        assert all(process.exitcode == 0 for process in processes)
        assert_raced(store, batches[0] + batches[1])
        results.close()
        results.join_thread()


# ---------------------------------------------------------------------------------------------- sqlite only

def raw(store: SqliteEventStore, tenant: str) -> sqlite3.Connection:
    return sqlite3.connect(store.database_path(tenant), isolation_level=None)


def test_sqlite_loads_an_instance_from_its_last_commit_whatever_the_listing_rows_say(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "i-1", interests=["s:1"])
        for n in range(40):
            send(store, A, "i-1", "tick", f"t-{n}")
        current = store.load(A, "i-1")
        assert current == fold(None, store.read(A, "i-1"))

    database = sqlite3.connect(tmp_path / "tenants" / f"{A}.db", isolation_level=None)
    try:
        database.execute("INSERT INTO instances SELECT 'ghost', workflow_id, state, status, interests"
                         " FROM instances WHERE id = 'i-1'")
        database.execute("DELETE FROM instances WHERE id = 'i-1'")
        database.execute("DELETE FROM interests WHERE instance_id = 'i-1'")
        # cache_size=0: every load and append reads the file.
        with SqliteEventStore(tmp_path, cache_size=0) as store:
            assert store.load(A, "i-1") == current
            # A listing row without commits is no instance.
            with pytest.raises(InstanceNotFound):
                store.load(A, "ghost")
            assert store.list_instances(A).items == []
            # The next change of a listed column writes the lost row again.
            send(store, A, "i-1", "move", "t-move")
            current = store.load(A, "i-1")
            assert current.state == "busy"
            assert store.list_instances(A).items == store.list_instances(A, state="busy").items == [current]
            assert store.interested(A, ["s:1"]) == ["i-1"]
    finally:
        database.close()


def test_sqlite_an_append_restores_a_lost_listing_row(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "i-1", interests=["s:1"])
        send(store, A, "i-1", "tick", "t-1")  # the store now has the instance cached
        database = raw(store, A)
        try:
            database.execute("DELETE FROM instances WHERE id = 'i-1'")
        finally:
            database.close()
        send(store, A, "i-1", "move", "t-2")
        current = store.load(A, "i-1")
        assert (current.version, current.state) == (3, "busy")
        assert store.list_instances(A, state="busy").items == [current]
        assert store.interested(A, ["s:1"]) == ["i-1"]


def test_sqlite_a_commit_that_changes_no_listed_column_leaves_the_listing_row_alone(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "i-1")
        database = raw(store, A)
        try:
            database.execute("CREATE TRIGGER no_update BEFORE UPDATE ON instances BEGIN SELECT RAISE(ABORT, 'x'); END")
            send(store, A, "i-1", "tick", "t-1")  # state, status and interests stay: nothing to update
            with pytest.raises(StoreUnavailable):
                send(store, A, "i-1", "move", "t-2")  # the state changes: the row is updated
            database.execute("DROP TRIGGER no_update")
        finally:
            database.close()
        send(store, A, "i-1", "move", "t-2")
        assert [i.state for i in store.list_instances(A, state="busy").items] == ["busy"]


def test_sqlite_a_file_of_schema_version_1_is_migrated(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "i-1", interests=["s:1"])
        send(store, A, "i-1", "tick", "t-1")
        current = store.load(A, "i-1")
    # Version 1 kept the instance's version and document in its listing row.
    database = sqlite3.connect(tmp_path / "tenants" / f"{A}.db", isolation_level=None)
    try:
        database.execute("ALTER TABLE instances ADD COLUMN version INTEGER NOT NULL DEFAULT 2")
        database.execute("ALTER TABLE instances ADD COLUMN doc TEXT NOT NULL DEFAULT '{}'")
        database.execute("PRAGMA user_version = 1")
        with SqliteEventStore(tmp_path) as store:
            assert store.load(A, "i-1") == current
            assert store.list_instances(A).items == [current]
            send(store, A, "i-1", "move", "t-2")
            assert store.list_instances(A, state="busy").items == [store.load(A, "i-1")]
        columns = [row[1] for row in database.execute("PRAGMA table_info(instances)")]
        assert columns == ["id", "workflow_id", "state", "status", "interests"]
        assert database.execute("PRAGMA user_version").fetchone() == (2,)
    finally:
        database.close()


def test_sqlite_a_small_instance_cache_stays_correct(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path, cache_size=2) as store:
        for n in range(5):
            create(store, A, f"i-{n}")
        for n in range(5):
            send(store, A, f"i-{n}", "tick", f"t-{n}")
        for n in range(5):
            assert store.load(A, f"i-{n}") == fold(None, store.read(A, f"i-{n}"))


def test_sqlite_keeps_each_tenant_in_its_own_file(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        create(store, A, "i-1")
        create(store, B, "i-1")
        assert store.database_path(A) != store.database_path(B)
        assert store.database_path(A).parent == store.database_path(B).parent == tmp_path / "tenants"
        for tenant in (A, B):
            database = raw(store, tenant)
            try:
                assert database.execute("SELECT count(*) FROM instances").fetchone() == (1,)
                assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            finally:
                database.close()


@pytest.mark.parametrize("tenant", ["../escape", "a/b", "", ".hidden", "x" * 64, "tenant.db", "a b"])
def test_sqlite_refuses_a_tenant_id_that_is_not_a_plain_name(tmp_path: Path, tenant: str) -> None:
    with SqliteEventStore(tmp_path) as store:
        with pytest.raises(TenantNotFound):
            store.load(tenant, "i-1")
        with pytest.raises(TenantNotFound):
            store.ping(tenant)
    assert not (tmp_path / "tenants").exists() or list((tmp_path / "tenants").iterdir()) == []


def test_sqlite_storage_that_cannot_be_reached_is_unavailable(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with SqliteEventStore(not_a_directory) as store:
        with pytest.raises(StoreUnavailable):
            store.ping(A)
        with pytest.raises(StoreUnavailable):
            store.load(A, "i-1")


def test_sqlite_a_locked_database_is_unavailable_and_nothing_is_written(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path, busy_timeout=0.05) as store:
        create(store, A, "i-1")
        before = snapshot(store, A, "i-1")
        instance = store.load(A, "i-1")
        decision = triggered(instance, "tick", "t-1")
        locker = raw(store, A)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable) as caught:
                store.append(A, "i-1", instance.version, decision.events, state=decision.instance)
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert snapshot(store, A, "i-1") == before
        store.append(A, "i-1", instance.version, decision.events, state=decision.instance)
        assert store.load(A, "i-1").version == 2


def test_group_commit_stores_each_commit_whole_and_refuses_only_the_bad_ones(event_store: EventStore) -> None:
    from engine.stores.base import PendingCommit, append_many

    create(event_store, "acme", "a")
    create(event_store, "acme", "b")
    send(event_store, "acme", "b", "tick", "already")
    a, b = event_store.load("acme", "a"), event_store.load("acme", "b")
    a1 = triggered(a, "tick", "a-1")
    a2 = triggered(a1.instance, "tick", "a-2")  # decided on a1: valid only if a1 is stored first
    stale = triggered(a, "tick", "stale")  # decided on a's old version
    again = triggered(b, "tick", "already")  # a trigger b has recorded
    fresh = created("c")
    results = append_many(event_store, "acme", [
        PendingCommit("a", a.version, a1.events, a1.instance),
        PendingCommit("a", a1.instance.version, a2.events, a2.instance),
        PendingCommit("a", a.version, stale.events, stale.instance),
        PendingCommit("b", b.version, again.events, again.instance),
        PendingCommit("c", 0, fresh.events, fresh.instance),
    ])
    assert [type(r).__name__ for r in results] == ["Commit", "Commit", "ConcurrencyConflict", "DuplicateTrigger",
                                                   "Commit"]
    assert [e.trigger_id for e in event_store.read("acme", "a")] == ["create-a", "a-1", "a-2"]
    assert event_store.load("acme", "a") == a2.instance
    assert event_store.load("acme", "c") == fresh.instance
    assert len(event_store.read("acme", "b")) == 2
    positions = [r.position for r in results if not isinstance(r, Exception)]
    assert [c.position for c in event_store.read_feed("acme", after=positions[0] - 1)][-3:] == positions


def test_group_commit_refuses_what_follows_a_refused_commit_of_the_same_instance(event_store: EventStore) -> None:
    from engine.stores.base import PendingCommit, append_many

    create(event_store, "acme", "a")
    a = event_store.load("acme", "a")
    mine = triggered(a, "tick", "mine")
    follows = triggered(mine.instance, "tick", "follows")
    send(event_store, "acme", "a", "tick", "theirs")  # another writer takes version 2 first
    results = append_many(event_store, "acme", [PendingCommit("a", a.version, mine.events, mine.instance),
                                                PendingCommit("a", mine.instance.version, follows.events,
                                                              follows.instance)])
    assert [type(r).__name__ for r in results] == ["ConcurrencyConflict", "ConcurrencyConflict"]
    assert [e.trigger_id for e in event_store.read("acme", "a")] == ["create-a", "theirs"]
