"""32 triggers racing on one instance against cosmosdb-server, from two processes of two threads each, through the
command processor (find_trigger + load + decide + append, retried after each lost race). Each trigger is sent
twice, by both processes at once: gapless, nothing lost, nothing applied twice.

(The contract suite runs its 4-thread race against the Cosmos store as well; this one adds processes and the
processor's path, with duplicates in flight.)"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from typing import Any

from engine.domain import Trigger
from engine.drivers.cosmos import CosmosLocation, cosmos_client
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import CreateInstance
from engine.service.engine import Engine
from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore
from tests.contract.test_event_store import A
from tests.cosmos_fixtures import CosmosSilo

TRIGGERS = [f"k-{n:02d}" for n in range(32)]
# A workflow whose `tick` counts: a trigger applied twice, or lost, shows in the count.
COUNTER = {
    "id": "counter",
    "initialState": "open",
    "states": {"open": {"transitions": [
        {"id": "tick", "trigger": "tick", "target": "open",
         "actions": [{"type": "set-context", "values": {"count": "context.count + 1"}}]}]}},
}


def engine_for(endpoint: str, key: str, database: str) -> Engine:
    client = cosmos_client(endpoint, key=key, verify=False)

    def location(tenant: str) -> CosmosLocation:
        return CosmosLocation(database)

    return Engine(events=CosmosEventStore(client, resolve=location),
                  definitions=CosmosDefinitionStore(client, resolve=location), queue=MemoryCommandQueue())


def race_in_process(endpoint: str, key: str, database: str, start: Any, results: Any) -> None:
    """Runs in a spawned process: two threads, each sending half of every trigger id (the other process sends
    the same ids at the same time)."""
    try:
        from urllib3.exceptions import InsecureRequestWarning

        warnings.simplefilter("ignore", InsecureRequestWarning)
        engine = engine_for(endpoint, key, database)
        outcomes: list[tuple[str, bool]] = []
        errors: list[str] = []
        lock = threading.Lock()

        def thread(ids: list[str]) -> None:
            try:
                for trigger_id in ids:
                    result = engine.processor.trigger(A, "race", Trigger("tick", trigger_id, {}))
                    with lock:
                        outcomes.append((trigger_id, result.duplicate))
            except BaseException as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=thread, args=(TRIGGERS[n::2],)) for n in range(2)]
        start.wait(60)
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        engine.events.close()  # positions kept for a retry that never came are marked as gaps
        results.put(("ok", outcomes) if not errors else ("error", errors))
    except BaseException as e:
        results.put(("error", [repr(e)]))


def test_two_processes_race_32_triggers_each_sent_twice(cosmos_silo: CosmosSilo) -> None:
    database = cosmos_silo.location(A).database
    store = cosmos_silo.event_store()
    definitions = cosmos_silo.definition_store()
    engine = Engine(events=store, definitions=definitions, queue=MemoryCommandQueue())
    engine.catalog.put(A, COUNTER)
    engine.processor.create(CreateInstance(A, "race", "counter", "create", context={"count": 0}))

    server = cosmos_silo.account.server
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    processes = [context.Process(target=race_in_process, args=(server.endpoint, server.key, database, start, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    results.close()
    results.join_thread()
    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    assert all(process.exitcode == 0 for process in processes)

    # Each id was sent by both processes: applied by exactly one, answered as a duplicate to the other.
    sent = [entry for _, entries in outcomes for entry in entries]
    assert sorted(trigger_id for trigger_id, _ in sent) == sorted(TRIGGERS * 2)
    applied = sorted(trigger_id for trigger_id, duplicate in sent if not duplicate)
    assert applied == TRIGGERS

    events = store.read(A, "race")
    assert [event.sequence for event in events] == list(range(1, 34))  # gapless
    assert sorted(event.trigger_id or "" for event in events[1:]) == TRIGGERS  # each once
    instance = CosmosEventStore(cosmos_silo.client, resolve=cosmos_silo.location).load(A, "race")
    assert (instance.version, instance.context["count"]) == (33, 32)  # no lost update
    feed = store.read_feed(A, limit=1000)  # no reader waits at a gap: every lost position was marked
    assert sorted(c.last_sequence for c in feed) == list(range(1, 34))  # every commit in the feed, once
    positions = [c.position for c in feed]
    assert positions == sorted(set(positions))
