"""What the Cosmos event store does beyond the shared contract (tests/contract runs that against it too): its request
budget, its document layout, the instance index and its repair, feed positions and gaps, ids Cosmos cannot take
as they are, and errors translated at the edge. All against a real cosmosdb-server (tests/cosmos_fixtures.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey

from engine.domain import (
    ConcurrencyConflict,
    Decision,
    DuplicateTrigger,
    Instance,
    InstanceNotFound,
    Services,
    Status,
    StoreUnavailable,
    TenantNotFound,
    Trigger,
    decide_trigger,
    default_registry,
    fold,
    parse_definition,
)
from engine.drivers.cosmos import CosmosLocation, RequestCounter
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.results import Result
from engine.service.worker import Worker
from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore
from tests.contract.test_event_store import A, B, create, send, triggered
from tests.cosmos_fixtures import CosmosSilo

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"


def documents(silo: CosmosSilo, tenant: str, sql: str = "SELECT * FROM c", **parameters: Any) -> list[dict[str, Any]]:
    """The raw documents of a tenant's events container (what is really stored)."""
    container = silo.client.get_database_client(silo.location(tenant).database).get_container_client("events")
    params = [{"name": f"@{name}", "value": value} for name, value in parameters.items()]
    return list(container.query_items(sql, parameters=params, enable_cross_partition_query=True))


def engine_on(silo: CosmosSilo, client: Any = None, expense_claim: dict[str, Any] | None = None) -> Engine:
    client = client or silo.client
    engine = Engine(events=CosmosEventStore(client, resolve=silo.location, auto_create=True),
                    definitions=CosmosDefinitionStore(client, resolve=silo.location, auto_create=True),
                    queue=MemoryCommandQueue())
    if expense_claim is not None:
        engine.catalog.put(A, expense_claim)
    return engine


# ---------------------------------------------------------------------------------------------- request budget

def test_a_trigger_costs_two_requests_in_the_steady_state(cosmos_silo: CosmosSilo,
                                                          expense_claim: dict[str, Any]) -> None:
    counter = RequestCounter()
    client = cosmos_silo.account.server.client(request_hook=counter)
    engine = engine_on(cosmos_silo, client, expense_claim)
    engine.processor.create(CreateInstance(A, "claim-1", "expense-claim", "c-1", context={"claimant": "ann"}))
    engine.processor.trigger(A, "claim-1", Trigger("update", "warm-up", {"amount": 1}))

    counter.reset()
    engine.processor.create(CreateInstance(A, "claim-2", "expense-claim", "c-2", context={"claimant": "bob"}))
    assert counter.reset() == 4  # find_trigger, the workflow's latest version (the catalog asks), position, commit

    # Cold: a new store (another process) that has never seen the instance: find_trigger, load, position, commit.
    cold = Engine(events=CosmosEventStore(client, resolve=cosmos_silo.location), definitions=engine.definitions,
                  queue=MemoryCommandQueue())
    cold.catalog.get(A, "expense-claim", 1)
    cold.events.ping(A)  # its first call checks the tenant's container (once per tenant and store)
    counter.reset()
    cold.processor.trigger(A, "claim-1", Trigger("update", "cold", {"amount": 2}))
    assert counter.reset() == 4

    # Warm: the head this store holds is not read again (a stale one would make the create collide): the position
    # and the commit.
    for n in range(5):
        counter.reset()
        result = cold.processor.trigger(A, "claim-1", Trigger("update", f"warm-{n}", {"amount": n}))
        assert counter.reset() == 2, counter.by_method
        assert result.instance.context["amount"] == n

    # A redelivered trigger this store recorded is answered from memory.
    counter.reset()
    again = cold.processor.trigger(A, "claim-1", Trigger("update", "warm-0", {"amount": 99}))
    assert again.duplicate and again.instance.context["amount"] == 0 and counter.reset() == 0

    # A head made stale by another writer costs a lost race, and the result is still right.
    engine.processor.trigger(A, "claim-1", Trigger("update", "elsewhere", {"amount": 7}))
    result = cold.processor.trigger(A, "claim-1", Trigger("update", "after-elsewhere", {"amount": 8}))
    assert result.instance.version == engine.events.load(A, "claim-1").version == 10
    assert [e.sequence for e in engine.events.read(A, "claim-1")] == list(range(1, 11))

    # A trigger another store recorded, redelivered to this one while its head is stale: the create's 409 tells
    # it is recorded; the first result is answered and nothing is applied twice.
    engine.processor.trigger(A, "claim-1", Trigger("update", "theirs", {"amount": 9}))
    redelivered = cold.processor.trigger(A, "claim-1", Trigger("update", "theirs", {"amount": 99}))
    assert redelivered.duplicate and redelivered.instance.context["amount"] == 9
    assert [e.trigger_id for e in engine.events.read(A, "claim-1")].count("theirs") == 1


def test_a_worker_batch_takes_its_positions_in_one_request_and_is_marked_in_one_more(
        cosmos_silo: CosmosSilo, expense_claim: dict[str, Any]) -> None:
    counter = RequestCounter()
    client = cosmos_silo.account.server.client(request_hook=counter)
    engine = engine_on(cosmos_silo, client, expense_claim)
    ids = [f"claim-{n}" for n in range(8)]
    created = [engine.processor.create(CreateInstance(A, instance_id, "expense-claim", f"c-{instance_id}",
                                                      context={"claimant": "ann"})) for instance_id in ids]
    engine.events.mark_dispatched(A, [r.commit.position for r in created if r.commit.position is not None])

    counter.reset()
    results = engine.processor.trigger_many(A, [(i, Trigger("update", f"t-{i}", {"amount": 1})) for i in ids])
    assert all(isinstance(r, Result) for r in results)
    assert counter.by_method == {"PATCH": 1, "POST": 8}  # the batch's positions; the commits
    positions = [r.commit.position for r in results if isinstance(r, Result)]
    assert positions == list(range(positions[0], positions[0] + 8))

    counter.reset()
    engine.events.mark_dispatched(A, [p for p in positions if p is not None])
    assert counter.by_method == {"PATCH": 9}  # each instance's index; one mark in the outbox document
    assert engine.events.undispatched(A, limit=100) == [c for c in engine.events.undispatched(A, limit=100)
                                                         if c.position not in positions]
    assert all(c.dispatched for c in engine.events.read_feed(A) if c.position in positions)


# ---------------------------------------------------------------------------------------------- layout

def test_one_document_per_commit_with_the_state_after_it(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store()
    create(store, A, "i-1")
    commit = send(store, A, "i-1", "finish", "t-finish")  # two events, one commit
    commits = documents(cosmos_silo, A, "SELECT * FROM c WHERE c.kind = 'commit' ORDER BY c.position")

    assert [doc["id"] for doc in commits] == ["i-1:0000000001", "i-1:0000000002"]
    last = commits[-1]
    assert (last["instanceId"], last["firstSequence"], last["lastSequence"]) == ("i-1", 2, 3)
    assert (last["triggerId"], last["triggerKey"], last["position"]) == ("t-finish", "t:t-finish", commit.position)
    assert (last["dispatched"], last["indexed"]) == (False, False)
    assert [event["type"] for event in json.loads(last["events"])] == ["TransitionApplied", "Completed"]
    assert json.loads(last["instance"]) == commit.state.to_dict()
    counter = documents(cosmos_silo, A, "SELECT * FROM c WHERE c.kind = 'counter'")
    assert [(doc["id"], doc["instanceId"], doc["next"]) for doc in counter] == [("~feed:position", "~feed", 2)]


def test_ids_that_cosmos_cannot_take_as_they_are(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store()
    odd = ["a/b?c#d", "per%cent", "naïve ☃", "x" * 150, "~feed", "trailing "]
    for instance_id in odd:
        create(store, A, instance_id, interests=[f"s:{instance_id}"])
        send(store, A, instance_id, "tick", f"t/{instance_id}?#")
    reader = cosmos_silo.event_store()
    for instance_id in odd:
        instance = reader.load(A, instance_id)
        assert (instance.id, instance.version, instance.context["count"]) == (instance_id, 2, 1)
        assert [e.sequence for e in reader.read(A, instance_id)] == [1, 2]
        assert reader.find_trigger(A, instance_id, f"t/{instance_id}?#") is not None
        assert reader.interested(A, [f"s:{instance_id}"]) == [instance_id]
    assert [i.id for i in reader.list_instances(A).items] == sorted(odd)
    ids = [doc["id"] for doc in documents(cosmos_silo, A, "SELECT c.id FROM c")]
    assert len(ids) == len(set(ids)) and not any(ch in doc_id for doc_id in ids for ch in "/\\?#")


# ---------------------------------------------------------------------------------------------- idempotency, races

def test_a_duplicate_trigger_is_refused_by_the_unique_key_even_from_the_current_version(
        cosmos_silo: CosmosSilo) -> None:
    first, second = cosmos_silo.event_store(), cosmos_silo.event_store()
    create(first, A, "i-1")
    send(first, A, "i-1", "tick", "t-1")
    # Decided by a store that checks nothing itself: the server's unique key on /triggerKey refuses the create.
    instance = second.load(A, "i-1")
    decision = triggered(instance, "tick", "t-1")
    with pytest.raises(DuplicateTrigger):
        second.append(A, "i-1", instance.version, decision.events, state=decision.instance)
    assert second.load(A, "i-1").version == 2
    assert len(documents(cosmos_silo, A, "SELECT c.id FROM c WHERE c.kind = 'commit'")) == 2


def test_an_events_container_without_the_unique_key_is_refused(cosmos_silo: CosmosSilo) -> None:
    location = cosmos_silo.location("legacy")
    database = cosmos_silo.client.create_database_if_not_exists(location.database)
    database.create_container_if_not_exists("events", PartitionKey("/instanceId"))  # no unique key policy
    store = CosmosEventStore(cosmos_silo.client, resolve=cosmos_silo.location)
    with pytest.raises(StoreUnavailable, match="unique key"):
        create(store, "legacy", "i-1")
    with pytest.raises(StoreUnavailable, match="unique key"):
        store.ping("legacy")


def test_a_stale_head_collides_and_conflicts(cosmos_silo: CosmosSilo) -> None:
    first, second = cosmos_silo.event_store(), cosmos_silo.event_store()
    create(first, A, "i-1")
    stale = second.load(A, "i-1")  # second now believes version 1
    send(first, A, "i-1", "tick", "t-1")
    decision = triggered(stale, "tick", "t-2")
    with pytest.raises(ConcurrencyConflict):
        second.append(A, "i-1", stale.version, decision.events, state=decision.instance)
    # The position the lost race took is used by the next append instead of being left as a gap.
    commit = send(second, A, "i-1", "tick", "t-2")
    assert [c.position for c in second.read_feed(A)] == [1, 2, commit.position]
    assert commit.position == 3


# ---------------------------------------------------------------------------------------------- the instance index

def index_documents(silo: CosmosSilo, tenant: str) -> dict[str, dict[str, Any]]:
    return {doc["instanceId"]: doc for doc in documents(silo, tenant, "SELECT * FROM c WHERE c.kind = 'index'")}


def test_the_index_is_repaired_after_a_crash_between_commit_and_index(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store()
    for n in range(3):
        create(store, A, f"i-{n}", interests=[f"s:{n}"])
    send(store, A, "i-1", "move", "t-move")
    send(store, A, "i-2", "finish", "t-finish")
    # "The process died after the commits, before anything indexed them": no index document exists at all.
    assert index_documents(cosmos_silo, A) == {}

    # Listings are right all the same: the commits not indexed yet are merged in.
    fresh = cosmos_silo.event_store()
    current = {f"i-{n}": fresh.load(A, f"i-{n}") for n in range(3)}
    assert fresh.list_instances(A).items == list(current.values())
    assert [i.id for i in fresh.list_instances(A, status="Complete").items] == ["i-2"]
    assert [i.id for i in fresh.list_instances(A, state="busy").items] == ["i-1"]
    assert fresh.interested(A, ["s:0", "s:2"]) == ["i-0"]  # i-2 is Complete: it listens to nothing
    assert fresh.interested(A, ["i-1"]) == ["i-1"]  # an instance's id is always an interest

    # The sweeper's repair writes the index from the newest commit of each instance and flags the commits.
    assert fresh.repair_index(A) == 5
    index = index_documents(cosmos_silo, A)
    assert {instance_id: doc["version"] for instance_id, doc in index.items()} == {"i-0": 1, "i-1": 2, "i-2": 3}
    assert (index["i-2"]["status"], index["i-1"]["state"]) == ("Complete", "busy")
    assert documents(cosmos_silo, A, "SELECT c.id FROM c WHERE c.kind = 'commit' AND c.indexed = false") == []
    assert fresh.repair_index(A) == 0
    assert fresh.list_instances(A).items == list(current.values())
    assert fresh.list_instances(A, status="Complete", limit=1).items == [current["i-2"]]


def test_the_index_follows_marking_and_never_moves_backward(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store()
    first = create(store, A, "i-1", interests=["s:old"])
    instance = store.load(A, "i-1")
    decision = triggered(instance, "move", "t-move")
    second = store.append(A, "i-1", 1, decision.events, state=replace(decision.instance, interests=("s:new",)))
    assert first.position is not None and second.position is not None

    store.mark_dispatched(A, [second.position])  # the outbox marks the newer commit first
    assert index_documents(cosmos_silo, A)["i-1"]["version"] == 2
    other = cosmos_silo.event_store()  # a store that has to look the position up
    other.mark_dispatched(A, [first.position])  # then the older one: the index stays at version 2
    doc = index_documents(cosmos_silo, A)["i-1"]
    assert (doc["version"], doc["state"], doc["interests"]) == (2, "busy", ["s:new"])
    assert other.interested(A, ["s:old"]) == [] and other.interested(A, ["s:new"]) == ["i-1"]
    assert other.undispatched(A) == []
    assert all(c.dispatched for c in other.read_feed(A))

    # A commit appended after the last indexing is merged into listings until it is indexed too.
    send(store, A, "i-1", "finish", "t-finish")
    assert [i.id for i in other.list_instances(A, status="Complete").items] == ["i-1"]
    assert other.list_instances(A, state="busy").items == []
    assert index_documents(cosmos_silo, A)["i-1"]["version"] == 2


def outbox_document(silo: CosmosSilo, tenant: str) -> dict[str, Any]:
    [doc] = documents(silo, tenant, "SELECT * FROM c WHERE c.kind = 'outbox'")
    return doc


def test_the_sweeper_folds_the_outbox_marks_into_a_watermark(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store()
    positions = [create(store, A, f"i-{n}").position for n in range(5)]
    assert None not in positions
    p = [int(position or 0) for position in positions]
    store.mark_dispatched(A, [p[0], p[1], p[3]])
    store.mark_dispatched(A, [p[1]])  # again: no harm
    assert len(outbox_document(cosmos_silo, A)["marks"]) == 2  # one entry per mark, none rewritten

    state = store.compact(A)  # what the sweeper's repair_index starts with
    assert (state.through, set(state.marked)) == (p[1], {p[3]})
    doc = outbox_document(cosmos_silo, A)
    assert (doc["through"], doc["marks"]) == (p[1], {"compacted": [p[3]]})
    assert [c.position for c in store.undispatched(A)] == [p[2], p[4]]
    assert [c.dispatched for c in cosmos_silo.event_store().read_feed(A)] == [True, True, False, True, False]

    store.mark_dispatched(A, [p[2], p[4]])
    assert cosmos_silo.event_store().repair_index(A) == 0  # nothing unmarked to index
    assert (outbox_document(cosmos_silo, A)["through"], outbox_document(cosmos_silo, A)["marks"]) == (
        p[4], {"compacted": []})
    assert store.undispatched(A) == [] and all(c.dispatched for c in store.read_feed(A))
    assert store.list_instances(A).items == [store.load(A, f"i-{n}") for n in range(5)]


def test_marks_held_up_by_an_undispatched_commit_stay_bounded(cosmos_silo: CosmosSilo,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.stores.cosmos.outbox as outbox

    monkeypatch.setattr(outbox, "MAX_MARKS", 4)
    store = cosmos_silo.event_store()
    p = [int(create(store, A, f"i-{n}").position or 0) for n in range(10)]
    store.mark_dispatched(A, p[1:])  # the first commit's delivery keeps failing: the watermark cannot move

    state = store.compact(A)

    assert state.through == 0 and len(state.marked) == 2  # the oldest marks were flagged on their commits
    flagged = documents(cosmos_silo, A, "SELECT c.position FROM c WHERE c.kind = 'commit' AND c.dispatched = true")
    assert sorted(doc["position"] for doc in flagged) == p[1:8]
    assert [c.position for c in store.undispatched(A)] == [p[0]]
    assert [c.dispatched for c in store.read_feed(A)] == [False] + [True] * 9
    store.mark_dispatched(A, [p[0]])
    assert store.compact(A).through == p[-1]


def test_the_watermark_steps_over_gaps_and_old_missing_positions_only() -> None:
    from engine.stores.cosmos.outbox import OutboxState, Slot, advance

    def slot(position: int, kind: str = "commit", *, flagged: bool = False, old: bool = False) -> Slot:
        return Slot(position, kind, flagged, old)

    state = OutboxState(10, frozenset({11, 14, 17}))
    # 12 a gap marker, 13 flagged, 15 missing before a young commit: stop at 14.
    assert advance(state, [slot(11), slot(12, "gap"), slot(13, flagged=True), slot(14), slot(16), slot(17)]) == 14
    # 15 missing before an old commit (16, not dispatched): past 15, stop before 16.
    assert advance(state, [slot(11), slot(12, "gap"), slot(13, flagged=True), slot(14), slot(16, old=True),
                           slot(17)]) == 15
    assert advance(OutboxState(10, frozenset()), []) == 10


# ---------------------------------------------------------------------------------------------- feed positions

def test_the_feed_waits_at_a_young_gap_and_steps_over_an_old_one(cosmos_silo: CosmosSilo) -> None:
    first, second = cosmos_silo.event_store(), cosmos_silo.event_store()
    create(first, A, "i-1")  # position 1
    stale = first.load(A, "i-1")
    send(second, A, "i-1", "tick", "t-1")  # position 2
    decision = triggered(stale, "tick", "t-2")
    with pytest.raises(ConcurrencyConflict):  # takes position 3, loses the race, keeps 3 for its retry
        first.append(A, "i-1", stale.version, decision.events, state=decision.instance)
    create(second, A, "i-2")  # position 4: nothing has position 3 yet

    assert [c.position for c in second.read_feed(A)] == [1, 2]  # 3 may still come: wait before it
    impatient = cosmos_silo.event_store(gap_grace=0.0)
    assert [c.position for c in impatient.read_feed(A)] == [1, 2, 4]  # an old gap is stepped over
    late = send(first, A, "i-1", "tick", "t-2")  # the retry uses the kept position
    assert late.position == 3
    feed = second.read_feed(A)
    assert [(c.position, c.instance_id) for c in feed] == [(1, "i-1"), (2, "i-1"), (3, "i-1"), (4, "i-2")]
    assert second.read_feed(A, after=2, limit=1) == [late]


def test_positions_that_will_never_hold_a_commit_are_marked_and_not_waited_at(cosmos_silo: CosmosSilo) -> None:
    first, second = cosmos_silo.event_store(), cosmos_silo.event_store()
    create(first, A, "i-1")  # position 1
    send(first, A, "i-1", "tick", "t-1")  # position 2
    with pytest.raises(DuplicateTrigger):  # a redelivery: takes position 3, which no retry will use
        send(first, A, "i-1", "tick", "t-1")
    create(second, A, "i-2")  # position 4
    assert [c.position for c in second.read_feed(A)] == [1, 2, 4]

    stale = second.load(A, "i-2")
    create(first, A, "i-3")  # position 5
    send(first, A, "i-2", "move", "t-move")  # position 6
    decision = triggered(stale, "finish", "t-finish")
    with pytest.raises(ConcurrencyConflict):  # position 7, kept by `second` for a retry that does not come
        second.append(A, "i-2", stale.version, decision.events, state=decision.instance)
    create(first, A, "i-4")  # position 8
    assert [c.position for c in first.read_feed(A)] == [1, 2, 4, 5, 6]
    second.close()  # a store closing marks what it kept
    assert [c.position for c in first.read_feed(A)] == [1, 2, 4, 5, 6, 8]
    gaps = documents(cosmos_silo, A, "SELECT c.position FROM c WHERE c.kind = 'gap' ORDER BY c.position")
    assert [doc["position"] for doc in gaps] == [3, 7]


# ---------------------------------------------------------------------------------------------- tenants and errors

def test_a_tenant_without_storage_is_not_found(cosmos_silo: CosmosSilo) -> None:
    store = CosmosEventStore(cosmos_silo.client, resolve=cosmos_silo.location)  # no auto_create
    with pytest.raises(TenantNotFound):
        store.load(B, "i-1")
    with pytest.raises(TenantNotFound):
        create(store, B, "i-1")
    with pytest.raises(StoreUnavailable):
        store.ping(B)
    bad = CosmosEventStore(cosmos_silo.client, resolve=lambda tenant: CosmosLocation(f"bad/{tenant}"))
    with pytest.raises(TenantNotFound):
        bad.load(A, "i-1")
    definitions = CosmosDefinitionStore(cosmos_silo.client, resolve=cosmos_silo.location)
    with pytest.raises(StoreUnavailable):
        definitions.ping(B)
    store.ensure_tenant(B)
    create(store, B, "i-1")
    store.ping(B)
    definitions.ping(B)
    assert store.load(B, "i-1").version == 1


def test_an_unreachable_server_is_store_unavailable_and_the_command_stays_queued(
        private_cosmos_server: Any, expense_claim: dict[str, Any]) -> None:
    server = private_cosmos_server
    client = server.client(retry_connect=0, connection_timeout=2)

    def location(tenant: str) -> CosmosLocation:
        return CosmosLocation(f"fault-{tenant}")

    events = CosmosEventStore(client, resolve=location, auto_create=True)
    engine = Engine(events=events, definitions=CosmosDefinitionStore(client, resolve=location, auto_create=True),
                    queue=MemoryCommandQueue())
    engine.catalog.put(A, expense_claim)
    engine.processor.create(CreateInstance(A, "claim-1", "expense-claim", "c-1", context={"claimant": "ann"}))
    instance = events.load(A, "claim-1")
    worker = Worker(engine.queue, engine.processor)

    server.stop()
    engine.queue.send(to_message(SendTrigger(A, "claim-1", Trigger("update", "during-outage", {"amount": 5}))))
    [message] = engine.queue.receive(max_messages=1)
    assert worker.process(message) is False  # released, not completed: it is retried later
    assert engine.queue.depth() == 1

    decision = triggered_claim(instance)
    calls = {
        "append": lambda: events.append(A, "claim-1", 1, decision.events, state=decision.instance),
        "load": lambda: events.load(A, "claim-1"),
        "read": lambda: events.read(A, "claim-1"),
        "find_trigger": lambda: events.find_trigger(A, "claim-1", "c-1"),
        "list_instances": lambda: events.list_instances(A),
        "interested": lambda: events.interested(A, ["s"]),
        "read_feed": lambda: events.read_feed(A),
        "undispatched": lambda: events.undispatched(A),
        "mark_dispatched": lambda: events.mark_dispatched(A, [1]),
        "ping": lambda: events.ping(A),
        "definitions": lambda: engine.definitions.get(A, "expense-claim"),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.store == "cosmos", name
        assert isinstance(caught.value.__cause__, AzureError), name

    server.start()  # an empty account again (cosmosdb-server keeps nothing): the same client works on
    events.ensure_tenant(A)
    engine.definitions.put(A, expense_claim)
    engine.processor.create(CreateInstance(A, "claim-1", "expense-claim", "c-1", context={"claimant": "ann"}))
    assert events.load(A, "claim-1").status is Status.WAITING


def triggered_claim(instance: Instance) -> Decision:
    """A decision on the expense claim, made without the store (the server is down)."""
    workflow = parse_definition(json.loads(SAMPLE.read_text()), default_registry(), version=1)
    return decide_trigger(instance, workflow, Trigger("update", "direct", {"amount": 3}), now=datetime.now(UTC),
                          services=Services())


def test_loads_stay_correct_with_no_cache(cosmos_silo: CosmosSilo) -> None:
    store = cosmos_silo.event_store(cache_size=0)
    create(store, A, "i-1")
    for n in range(5):
        send(store, A, "i-1", "tick", f"t-{n}")
    assert store.load(A, "i-1") == fold(None, store.read(A, "i-1"))
    with pytest.raises(InstanceNotFound):
        store.load(A, "nobody")
