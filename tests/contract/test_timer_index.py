"""The timer index contract (engine/stores/timers.py), run against the memory fake and Cosmos (cosmosdb-server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.stores.timers import IndexedTimer, MemoryTimerIndex, TimerIndex
from engine.stores.timers_cosmos import CosmosTimerIndex, TimersLocation
from tests.cosmos_fixtures import CosmosSilo


@pytest.fixture(params=["memory", "cosmos"])
def index(request: pytest.FixtureRequest) -> Iterator[TimerIndex]:
    if request.param == "memory":
        yield MemoryTimerIndex()
        return
    silo: CosmosSilo = request.getfixturevalue("cosmos_silo")
    cosmos = CosmosTimerIndex(lambda tenant: TimersLocation(silo.client, f"{silo.prefix}-{tenant}"), auto_create=True)
    try:
        yield cosmos
    finally:
        cosmos.close()


def timer(key: str, due_at: str, instance_id: str = "i-1") -> IndexedTimer:
    return IndexedTimer(key, instance_id, due_at, {"kind": "timer", "triggerId": key, "n": [1, 2**60]})


def test_due_timers_come_earliest_first_and_only_up_to_the_time_asked(index: TimerIndex) -> None:
    index.put("acme", timer("c", "2026-01-03T00:00:00.000000Z", "i-2"))
    index.put("acme", timer("a", "2026-01-01T00:00:00.000000Z"))
    index.put("acme", timer("b", "2026-01-02T00:00:00.000000Z"))
    found = index.due("acme", until="2026-01-02T00:00:00.000000Z")
    assert [t.key for t in found] == ["a", "b"]
    assert found[0] == timer("a", "2026-01-01T00:00:00.000000Z")  # the body comes back exactly (2**60 too)
    assert [t.key for t in index.due("acme", until="2027", limit=2)] == ["a", "b"]


def test_put_is_idempotent_and_remove_forgets(index: TimerIndex) -> None:
    first = timer("a:b/c?d#e", "2026-01-01T00:00:00.000000Z")  # a client's trigger id may hold any of these
    index.put("acme", first)
    index.put("acme", first)
    assert index.due("acme", until="2027") == [first]
    index.remove("acme", first)
    index.remove("acme", first)  # gone already: no error
    assert index.due("acme", until="2027") == []


def test_tenants_are_apart(index: TimerIndex) -> None:
    index.put("acme", timer("a", "2026-01-01T00:00:00.000000Z"))
    assert index.due("globex", until="2027") == []
