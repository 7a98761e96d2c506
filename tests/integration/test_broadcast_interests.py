"""A broadcast reaches live instances only: interests follow the state, and a finished instance has none.

1,000 instances listen to `batch:42` (by their state's `interests`, or given at creation); 900 are then
completed. A broadcast to `batch:42` appends exactly 100 events — one per live instance — and none to the 900
finished ones (before interests followed the state, each of those got a `TriggerRejected` per broadcast).
Measured on the real stores: events appended, counted from the store's feed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.domain import EventType, Trigger
from engine.hosting.runtime import memory_engine, sqlite_engine
from engine.service.commands import CreateInstance
from engine.service.engine import Engine

pytestmark = pytest.mark.integration

TENANT = "acme"
BATCH = {"id": "batch", "initialState": "open", "states": {
    "open": {"interests": ["batch:42"], "transitions": [{"id": "finish", "trigger": "finish", "target": "done"},
                                                        {"id": "ping", "trigger": "ping", "target": "open"}]},
    "done": {}}}


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "memory":
        yield memory_engine()
        return
    built = sqlite_engine(tmp_path, synchronous="normal")  # the fsync of each commit is not what is measured
    try:
        yield built
    finally:
        built.events.close()
        built.definitions.close()
        built.queue.close()


def last_position(engine: Engine) -> int:
    position = 0
    while page := engine.events.read_feed(TENANT, after=position, limit=1000):
        position = page[-1].position or position
    return position


@pytest.mark.parametrize("given", [False, True], ids=["state-interests", "given-at-creation"])
def test_a_broadcast_to_1000_instances_of_which_900_are_complete_touches_only_the_100_live_ones(
        engine: Engine, given: bool) -> None:
    document = BATCH if not given else {**BATCH, "states": {**BATCH["states"], "open": {
        "transitions": BATCH["states"]["open"]["transitions"]}}}  # no state interests: given at creation
    engine.catalog.put(TENANT, document)
    for n in range(1000):
        engine.processor.create(CreateInstance(TENANT, f"i-{n:04d}", "batch", f"create-{n}",
                                               interests=("batch:42",) if given else ()))
    finished = [(f"i-{n:04d}", Trigger("finish", f"finish-{n}")) for n in range(900)]
    for start in range(0, 900, 100):
        engine.processor.trigger_many(TENANT, finished[start:start + 100])
    assert len(engine.events.interested(TENANT, ["batch:42"])) == 100

    before = last_position(engine)
    results = engine.processor.broadcast(TENANT, Trigger("ping", "broadcast-1", {"n": 1}, subjects=("batch:42",)))
    appended = [event for commit in engine.events.read_feed(TENANT, after=before, limit=10_000)
                for event in commit.events]

    assert len(results) == 100
    assert len(appended) == 100  # one per live instance, nothing for the 900 finished ones
    assert {event.type for event in appended} == {EventType.TRANSITION_APPLIED}
    assert {event.instance_id for event in appended} == {f"i-{n:04d}" for n in range(900, 1000)}
    assert engine.events.load(TENANT, "i-0000").interests == ()
    assert engine.events.load(TENANT, "i-0999").interests == ("batch:42", "i-0999")


def test_the_instance_id_is_always_an_interest(engine: Engine) -> None:
    engine.catalog.put(TENANT, BATCH)
    engine.processor.create(CreateInstance(TENANT, "solo", "batch", "create-solo"))
    [result] = engine.processor.broadcast(TENANT, Trigger("ping", "b-solo", {}, subjects=("solo",)))
    assert result.instance_id == "solo" and result.commit.events[0].type is EventType.TRANSITION_APPLIED
