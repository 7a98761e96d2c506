"""What `waymark bench cosmos` measures: the queue worker's path on the Cosmos store, as `waymark serve --store
cosmos` and `waymark worker` run it, with the change feed (its outbox) and one webhook subscriber.

Steady state: the instances exist, their heads are held, their index documents exist, and the subscriber has
consented. Then `rounds` triggers per instance go on the (embedded) queue, the worker takes them in batches, and the
run ends when every commit is delivered to the subscriber and marked dispatched. Every request the Cosmos client
sends meanwhile is counted (the worker's, the dispatcher's marker's, the index writes), then one sweeper pass on its
own, amortised over the triggers at `feed_sweep_seconds` (the default period) for the time the run took:
`requests_per_trigger_total`. The same is measured one command at a time (`Worker.process`, what the Functions
host's queue function does per message), and the first trigger of a new process on an instance (cold).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bench.cosmos_server import ROOT, LocalCosmosServer
from engine.domain import Trigger
from engine.service.commands import CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine

SAMPLE = ROOT / "samples" / "expense-claim.json"
TENANT = "bench"
TARGET = 3.0
SWEEP_SECONDS = 10.0  # Settings.feed_sweep_seconds's default
EXCLUDED = ("Not counted: the command queue (embedded here; on Azure the Functions host's queue trigger adds its "
            "Azure Storage requests, about one GET per batch and one DELETE per message), the API's accept, and the "
            "webhook deliveries themselves (to the subscriber, not to Cosmos). Subscriptions are in the data "
            "directory as with `waymark serve --store cosmos` (the Azure host keeps them on Cosmos, read at most "
            "every 2 s).")


@dataclass
class _Rig:
    engine: Engine
    feed: Any
    receiver: Any
    close: Callable[[], None]


def _rig(engine: Engine, data_dir: Path) -> _Rig:
    """The engine with its change feed wired, one webhook subscriber (in a process of its own) consenting."""
    from engine.bench.feed import RemoteReceiver
    from engine.feed import ChangeFeed, SqliteSubscriptionStore

    receiver = RemoteReceiver()
    subscriptions = SqliteSubscriptionStore(data_dir)
    feed = ChangeFeed(engine.events, subscriptions, definitions=engine.catalog, tenants=lambda: [TENANT],
                      allow_private_destinations=True)
    engine.processor.on_commit = feed.on_commit

    def close() -> None:
        feed.close()
        subscriptions.close()
        receiver.close()

    try:
        subscription, _ = feed.subscribe(TENANT, "bench", endpoint=receiver.url, secret="bench-secret-0123456789")
        if subscription.status != "active":
            raise RuntimeError(f"the bench's subscriber did not consent: {subscription.last_error}")
    except BaseException:
        close()
        raise
    return _Rig(engine, feed, receiver, close)


def _create(engine: Engine, ids: list[str]) -> None:
    for instance_id in ids:
        engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", f"create-{instance_id}",
                                               context={"claimant": "Jo Bloggs", "costCentre": "CC-1234",
                                                        "description": "Train to the Leeds office and back"}))


def _run(rig: _Rig, ids: list[str], label: str, rounds: range, *, batch: int, one_at_a_time: bool = False) -> float:
    """Queue the triggers, work them off, wait until all are delivered and marked; the seconds it took."""
    from engine.service.worker import Worker

    engine = rig.engine
    wanted = len(rig.receiver.arrived) + len(ids) * len(rounds)
    for n in rounds:
        for instance_id in ids:
            engine.queue.send(to_message(SendTrigger(TENANT, instance_id, Trigger(
                "update", f"{label}-{instance_id}-{n}", {"amount": n + 0.5}))))
    worker = Worker(engine.queue, engine.processor, batch_size=batch)
    start = time.perf_counter()
    if one_at_a_time:
        while messages := engine.queue.receive(max_messages=1):
            worker.process(messages[0])
    else:
        while worker.run_once():
            pass
    if not rig.receiver.wait_for(lambda: len(rig.receiver.arrived) >= wanted, 120, every=0.01):
        raise RuntimeError("the triggers were not delivered within 120 s")
    if not rig.feed.dispatcher.drain(60):
        raise RuntimeError("the commits were not marked dispatched within 60 s")
    return time.perf_counter() - start


def cosmos_figures(server: LocalCosmosServer, *, instances: int, rounds: int, batch: int) -> dict[str, Any]:
    from engine.drivers.cosmos import CosmosLocation, RequestCounter
    from engine.queues.memory import MemoryCommandQueue
    from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore

    counter = RequestCounter()
    client = server.client(request_hook=counter)
    database = f"bench-{uuid.uuid4().hex[:8]}"

    def location(tenant: str) -> CosmosLocation:
        return CosmosLocation(f"{database}-{tenant}")

    definitions = CosmosDefinitionStore(client, resolve=location, auto_create=True)
    engine = Engine(events=CosmosEventStore(client, resolve=location, auto_create=True), definitions=definitions,
                    queue=MemoryCommandQueue())
    engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
    ids = [f"claim-{n:04d}" for n in range(instances)]
    with tempfile.TemporaryDirectory(prefix="waymark-bench-cosmos-") as tmp:
        rig = _rig(engine, Path(tmp))
        try:
            _create(engine, ids)
            _run(rig, ids, "warm-up", range(1), batch=batch)
            rig.feed.sweeper.sweep_once(wait=30)

            counter.reset()
            elapsed = _run(rig, ids, "steady", range(rounds), batch=batch)
            steady, by_method = counter.count, dict(counter.by_method)
            charge, charged, charges = counter.charge, counter.charged, set(counter.charges)
            counter.reset()
            rig.feed.sweeper.sweep_once(wait=30)
            sweep = counter.reset()

            single_rounds = max(1, rounds // 3)
            _run(rig, ids, "single", range(single_rounds), batch=1, one_at_a_time=True)
            single = counter.reset()
        finally:
            rig.close()

    # Cold: a new store (a new process) whose client has read the container already: the first trigger on each
    # instance, without the outbox.
    cold = Engine(events=CosmosEventStore(client, resolve=location), definitions=definitions,
                  queue=MemoryCommandQueue())
    cold.catalog.get(TENANT, "expense-claim", 1)
    cold.events.ping(TENANT)
    counter.reset()
    for instance_id in ids:
        cold.processor.trigger(TENANT, instance_id, Trigger("update", f"cold-{instance_id}", {"amount": 1}))
    cold_requests = counter.reset()

    triggers = instances * rounds
    sweeper_share = sweep * (elapsed / SWEEP_SECONDS) / triggers
    total = round(steady / triggers + sweeper_share, 3)
    constant_charge = charges == {1.0}
    return {
        "requests_per_trigger_total": total,
        "target_requests_per_trigger_total": TARGET,
        "met": total <= TARGET,
        "requests_by_method": {method: round(count / triggers, 3) for method, count in sorted(by_method.items())},
        "sweeper_requests_per_pass": sweep,
        "sweep_interval_seconds": SWEEP_SECONDS,
        "sweeper_requests_per_trigger": round(sweeper_share, 4),
        "requests_per_trigger_single": round(single / (instances * single_rounds), 3),
        "requests_per_trigger_cold": round(cold_requests / instances, 2),
        "ru_per_trigger": round(charge / triggers, 3) if charged else None,
        "ru_note": ("cosmosdb-server answers every request with x-ms-request-charge: 1, whatever it did, so its RU "
                    "per trigger is its request count, not what Cosmos DB would charge."
                    if constant_charge else
                    f"request charges summed from x-ms-request-charge on {charged} of {steady} responses."),
        "cosmos_tps": round(triggers / elapsed, 1),
        "instances": instances,
        "triggers_timed": triggers,
        "batch": batch,
        "excluded": EXCLUDED,
    }


def sqlite_tps(*, instances: int, rounds: int, batch: int) -> float:
    """The same path on the embedded store (SQLite at its default durability), with the same feed and subscriber."""
    from engine.hosting.runtime import sqlite_engine

    with tempfile.TemporaryDirectory(prefix="waymark-bench-cosmos-") as tmp:
        engine = sqlite_engine(Path(tmp))
        engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
        rig = _rig(engine, Path(tmp))
        try:
            ids = [f"claim-{n:04d}" for n in range(instances)]
            _create(engine, ids)
            _run(rig, ids, "warm-up", range(1), batch=batch)
            elapsed = _run(rig, ids, "steady", range(rounds), batch=batch)
        finally:
            rig.close()
            for part in (engine.events, engine.definitions, engine.queue):
                close = getattr(part, "close", None)
                if callable(close):
                    close()
        return instances * rounds / elapsed
