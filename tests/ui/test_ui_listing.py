"""The dashboard's instance orders (engine/ui/listing.py) on the in-memory and SQLite stores: natural id order,
the id search, and the most recently updated first across pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain import Trigger
from engine.hosting.runtime import memory_engine, sqlite_engine
from engine.service.commands import CreateInstance
from engine.service.engine import Engine
from engine.ui.listing import by_natural_id, natural_key, recently_updated

T = "acme"


@pytest.fixture(params=["memory", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, expense_claim: dict[str, Any]) -> Iterator[Engine]:
    engine = memory_engine() if request.param == "memory" else sqlite_engine(tmp_path)
    engine.catalog.put(T, expense_claim)
    yield engine
    close = getattr(engine.events, "close", None)
    if close is not None:
        close()


def create(engine: Engine, instance_id: str) -> None:
    engine.processor.create(CreateInstance(T, instance_id, "expense-claim", f"c-{instance_id}",
                                           context={"claimant": "ann"}))


def update(engine: Engine, instance_id: str, n: int) -> None:
    engine.processor.trigger(T, instance_id, Trigger("update", f"u-{instance_id}-{n}", {"amount": n}))


def feed_end(engine: Engine) -> int:
    commits = engine.events.read_feed(T, after=0, limit=1000)
    return commits[-1].position or 0 if commits else 0


def test_natural_key_orders_numbers_as_numbers() -> None:
    ids = ["claim-42", "claim-5", "Claim-7", "claim-4", "claim-100", "claim", "claim-4a", "2", "10"]
    assert sorted(ids, key=natural_key) == ["2", "10", "claim", "claim-4", "claim-4a", "claim-5", "Claim-7",
                                            "claim-42", "claim-100"]


def test_by_id_in_natural_order_with_a_search(engine: Engine) -> None:
    for n in (42, 5, 4, 100, 7):
        create(engine, f"claim-{n}")
    create(engine, "other-1")
    page = by_natural_id(engine.events, T, limit=3)
    assert [i.id for i in page.items] == ["claim-4", "claim-5", "claim-7"] and page.total == 6 and page.complete
    assert [i.id for i in by_natural_id(engine.events, T, offset=3, limit=3).items] == ["claim-42", "claim-100",
                                                                                       "other-1"]
    assert [i.id for i in by_natural_id(engine.events, T, search="CLAIM-4").items] == ["claim-4", "claim-42"]
    assert by_natural_id(engine.events, T, search="nothing-like-it").items == []


def test_by_id_past_the_bound_says_so_and_still_finds_an_exact_id(engine: Engine) -> None:
    for n in range(12):
        create(engine, f"i-{n:02d}")
    page = by_natural_id(engine.events, T, max_scanned=5, search="i-11")
    # The store reads pages of up to 1000: the bound stops it after the first page, so it is complete here; the
    # exact id is found either way.
    assert [i.id for i in page.items] == ["i-11"]


def test_recently_updated_first_across_pages(engine: Engine) -> None:
    for name in ("a", "b", "c", "d"):
        create(engine, name)
    update(engine, "b", 1)
    update(engine, "a", 1)
    update(engine, "b", 2)  # newest: b, then a, d, c
    end = feed_end(engine)
    first = recently_updated(engine.events, T, end=end, limit=2)
    assert [i.id for i in first.items] == ["b", "a"]
    assert first.items[0].version == 3  # the instance as it is now
    second = recently_updated(engine.events, T, end=end, before=first.before, limit=2)
    assert [i.id for i in second.items] == ["d", "c"]  # b and a are not listed again
    bounded = recently_updated(engine.events, T, end=end, before=first.before, limit=2, max_loads=2)
    assert [i.id for i in bounded.items] == ["d"] and bounded.before is not None
    rest = recently_updated(engine.events, T, end=end, before=bounded.before, limit=2)
    assert [i.id for i in rest.items] == ["c"]
    assert recently_updated(engine.events, T, end=end, before=second.before, limit=2).items == []


def test_recently_updated_with_a_filter_and_a_bound(engine: Engine) -> None:
    for name in ("x-1", "y-1", "x-2"):
        create(engine, name)
    end = feed_end(engine)
    page = recently_updated(engine.events, T, end=end, matches=lambda i: i.id.startswith("x"))
    assert [i.id for i in page.items] == ["x-2", "x-1"] and page.before is None
    bounded = recently_updated(engine.events, T, end=end, max_commits=1, window=1)
    assert [i.id for i in bounded.items] == ["x-2"] and bounded.before == end - 1  # the next page goes on there
    rest = recently_updated(engine.events, T, end=end, before=bounded.before, window=1)
    assert [i.id for i in rest.items] == ["y-1", "x-1"] and rest.before is None
