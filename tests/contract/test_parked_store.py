"""The parked-command store contract: every adapter (memory, the SQLite table in the tenant's file, the Cosmos
`parked` container on cosmosdb-server) keeps what is parked per tenant, lists it in parking order with filters and
stable pages, and forgets what is removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain import StoreUnavailable
from engine.stores.parked import (
    MemoryParkedStore,
    ParkedCommand,
    ParkedNotFound,
    ParkedQuery,
    ParkedStore,
    SqliteParkedStore,
)
from engine.stores.parked_cosmos import CosmosParkedStore, ParkedLocation
from tests.cosmos_fixtures import CosmosSilo


@pytest.fixture(params=["memory", "sqlite", "cosmos"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ParkedStore]:
    made: ParkedStore
    if request.param == "memory":
        made = MemoryParkedStore()
    elif request.param == "sqlite":
        made = SqliteParkedStore(tmp_path)
    else:
        silo: CosmosSilo = request.getfixturevalue("cosmos_silo")
        made = CosmosParkedStore(lambda tenant: ParkedLocation(silo.client, silo.location(tenant).database),
                                 auto_create=True)
    yield made
    made.close()


def parked(n: int, *, instance: str = "i-1", reason: str = "failed", minute: int = 0,
           body: dict[str, Any] | None = None) -> ParkedCommand:
    at = f"2026-01-01T10:{minute:02d}:00.{n:06d}Z"
    return ParkedCommand(id=f"p-{n:03d}", body=body or {"kind": "trigger", "tenant": "acme", "instanceId": instance,
                                                       "trigger": {"id": f"t-{n}", "topic": "go", "content": {"n": n}}},
                         reason=reason, detail=f"failure {n}", delivery_count=5, first_failure_at=at,
                         last_failure_at=at, parked_at=at, error_type="InstanceNotFound")


def test_a_parked_command_is_kept_whole(store: ParkedStore) -> None:
    command = parked(1, body={"kind": "trigger", "tenant": "acme", "instanceId": "i-1",
                              "trigger": {"id": "t-1", "topic": "go", "content": {"big": 2**60, "text": "é\u2028"}}})
    store.park("acme", command)
    got = store.get("acme", "p-001")
    assert got == command and got.to_dict() == command.to_dict()
    assert (got.instance_id, got.kind, got.trigger_id) == ("i-1", "trigger", "t-1")
    with pytest.raises(ParkedNotFound):
        store.get("acme", "p-999")


def test_parking_again_replaces_the_record(store: ParkedStore) -> None:
    store.park("acme", parked(1))
    store.park("acme", parked(1, reason="poisoned"))
    [only] = store.list("acme").items
    assert only.reason == "poisoned"


def test_tenants_are_siloed(store: ParkedStore) -> None:
    store.park("acme", parked(1))
    store.park("beta", parked(2))
    assert [c.id for c in store.list("acme").items] == ["p-001"]
    assert [c.id for c in store.list("beta").items] == ["p-002"]
    with pytest.raises(ParkedNotFound):
        store.get("beta", "p-001")
    assert store.remove("beta", "p-001") is False
    assert store.get("acme", "p-001").id == "p-001"


def test_listing_is_in_parking_order_with_stable_pages(store: ParkedStore) -> None:
    for n in (5, 3, 1, 4, 2, 6, 7):
        store.park("acme", parked(n))
    first = store.list("acme", limit=3)
    assert [c.id for c in first.items] == ["p-001", "p-002", "p-003"] and first.continuation
    store.remove("acme", "p-002")  # removing what was read does not move the pages that follow
    store.park("acme", parked(0))  # nor does parking before the token
    second = store.list("acme", limit=3, continuation=first.continuation)
    assert [c.id for c in second.items] == ["p-004", "p-005", "p-006"]
    third = store.list("acme", limit=3, continuation=second.continuation)
    assert [c.id for c in third.items] == ["p-007"] and third.continuation is None


def test_filters_by_instance_reason_and_time(store: ParkedStore) -> None:
    store.park("acme", parked(1, instance="a", reason="failed", minute=1))
    store.park("acme", parked(2, instance="b", reason="malformed", minute=2))
    store.park("acme", parked(3, instance="a", reason="malformed", minute=3))
    store.park("acme", parked(4, instance="a", reason="failed", minute=4))

    def ids(**query: Any) -> list[str]:
        return [c.id for c in store.list("acme", ParkedQuery(**query)).items]

    assert ids(instance_id="a") == ["p-001", "p-003", "p-004"]
    assert ids(reason="malformed") == ["p-002", "p-003"]
    assert ids(instance_id="a", reason="failed") == ["p-001", "p-004"]
    assert ids(since="2026-01-01T10:02:00Z") == ["p-002", "p-003", "p-004"]
    assert ids(until="2026-01-01T10:03:00Z") == ["p-001", "p-002"]
    assert ids(instance_id="zz") == []
    page = store.list("acme", ParkedQuery(instance_id="a"), limit=2)
    assert [c.id for c in page.items] == ["p-001", "p-003"]
    assert [c.id for c in store.list("acme", ParkedQuery(instance_id="a"), limit=2,
                                     continuation=page.continuation).items] == ["p-004"]


def test_remove_forgets_and_says_whether_it_was_there(store: ParkedStore) -> None:
    store.park("acme", parked(1))
    assert store.remove("acme", "p-001") is True
    assert store.remove("acme", "p-001") is False
    assert store.list("acme").items == []


def test_a_bad_page_request_is_refused(store: ParkedStore) -> None:
    for limit, token in [(0, None), (1001, None), (10, "not-a-token")]:
        with pytest.raises(ValueError):
            store.list("acme", limit=limit, continuation=token)


def test_an_unreachable_store_is_store_unavailable(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    store = SqliteParkedStore(blocked)
    with pytest.raises(StoreUnavailable):
        store.park("acme", parked(1))
    store.close()
