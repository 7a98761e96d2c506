"""A group commit's commits reach the change feed in one hand-over: those the subscription catalog's cache says no
subscription wants are marked without waking the router, the others go to it together."""

from __future__ import annotations

from typing import Any

from engine.domain import Commit, Trigger
from engine.hosting.runtime import memory_engine
from tests.feed.helpers import TENANT, create
from tests.webhook_receiver import Receiver, wait_until


def _count_router_items(rig: Any) -> list[int]:
    """The number of commits in each item put on the router's queue from now on."""
    sizes: list[int] = []
    routes = rig.feed.dispatcher._routes
    put = routes.put

    class Counting:
        def put(self, item: Any) -> None:
            if item is not None:
                sizes.append(len(item[1]))
            put(item)

        def get(self) -> Any:
            return routes.get()

    rig.feed.dispatcher._routes = Counting()
    return sizes


def _group(rig: Any, n: int, prefix: str) -> list[Any]:
    results = rig.engine.processor.trigger_many(
        TENANT, [(f"c{i}", Trigger("update", f"{prefix}-{i}", {"amount": i + 0.5})) for i in range(n)])
    assert all(not isinstance(result, Exception) for result in results)
    return results


def test_commits_no_subscription_wants_are_marked_without_the_router(make_rig: Any) -> None:
    rig = make_rig(cache_seconds=60.0)
    for i in range(4):
        create(rig.engine, f"c{i}")  # the first routing fills the catalog's cache
    rig.drain()
    sizes = _count_router_items(rig)
    _group(rig, 4, "u")
    rig.drain()
    assert sizes == []  # the cache answered: nothing for the router
    assert rig.undispatched() == []


def test_a_group_wanted_by_a_subscription_goes_to_the_router_in_one_item(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(cache_seconds=60.0)
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    for i in range(4):
        create(rig.engine, f"c{i}")
    rig.drain()
    sizes = _count_router_items(rig)
    _group(rig, 4, "w")
    rig.drain()
    assert sizes == [4]
    assert rig.undispatched() == []
    assert wait_until(lambda: {f"c{i}:2" for i in range(4)} <= receiver.ids("/hook"))


def test_a_stale_cache_leaves_the_choice_to_the_router(make_rig: Any) -> None:
    rig = make_rig(cache_seconds=0.0)  # never fresh: the worker never reads a store to decide
    for i in range(3):
        create(rig.engine, f"c{i}")
    rig.drain()
    sizes = _count_router_items(rig)
    _group(rig, 3, "s")
    rig.drain()
    assert sizes == [3]
    assert rig.undispatched() == []


def test_a_listener_without_many_gets_each_commit() -> None:
    engine = memory_engine()
    engine.catalog.put(TENANT, {"id": "w", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "a"}]}}})
    seen: list[tuple[str, Commit]] = []
    engine.processor.on_commit = lambda tenant, commit: seen.append((tenant, commit))
    for i in range(3):
        create(engine, f"i{i}", workflow="w")
    results = engine.processor.trigger_many(TENANT, [(f"i{i}", Trigger("go", f"g{i}")) for i in range(3)])
    assert [commit.trigger_id for _, commit in seen] == ["create-i0", "create-i1", "create-i2", "g0", "g1", "g2"]
    assert [r.commit for r in results if not isinstance(r, Exception)] == [c for _, c in seen[3:]]
