"""One contract for the subscription stores (memory and SQLite): the same calls, the same answers."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.feed import MemorySubscriptionStore, SqliteSubscriptionStore, Subscription, SubscriptionStatus
from engine.feed.subscriptions import Mode, Source
from engine.tenants import KeyHasher
from engine.tenants.sealing import SealedValueError

SEALER = KeyHasher("server-secret-0123456789").sealer("subscription secrets")


@pytest.fixture(params=["memory", "sqlite", "sqlite-sealed"])
def store(request: Any, tmp_path: Path) -> Iterator[Any]:
    made = (MemorySubscriptionStore() if request.param == "memory" else
            SqliteSubscriptionStore(tmp_path, sealer=SEALER if request.param == "sqlite-sealed" else None))
    yield made
    made.close()


def _sub(name: str = "hook", **changes: Any) -> Subscription:
    return dataclasses.replace(Subscription(name=name, endpoint="https://example.org/hook", secret="s" * 20,
                                            types=frozenset({"io.waymark.workflow.instance.created"}),
                                            mode=Mode.BINARY), **changes)


def test_save_get_list_delete(store: Any) -> None:
    assert store.get("acme", "hook") is None and store.list("acme") == []
    store.save("acme", _sub("b"))
    store.save("acme", _sub("a", status=SubscriptionStatus.ACTIVE, backlog_from=7))
    assert [s.name for s in store.list("acme")] == ["a", "b"]
    found = store.get("acme", "a")
    assert found == _sub("a", status=SubscriptionStatus.ACTIVE, backlog_from=7)  # every field round-trips
    assert store.list("other") == [] and store.get("other", "a") is None  # tenants are apart
    assert store.delete("acme", "a") is True and store.delete("acme", "a") is False
    assert [s.name for s in store.list("acme")] == ["b"]


def test_modify_is_atomic_and_stores_a_default(store: Any) -> None:
    assert store.modify("acme", "missing", lambda s: s) is None
    derived = _sub("static:x", source=Source.STATIC)
    changed = store.modify("acme", "static:x", lambda s: dataclasses.replace(s, consecutive_failures=1),
                           default=derived)
    assert changed is not None and changed.consecutive_failures == 1
    assert store.get("acme", "static:x") == changed

    def bump(s: Subscription) -> Subscription:
        return dataclasses.replace(s, consecutive_failures=s.consecutive_failures + 1)

    threads = [threading.Thread(target=lambda: [store.modify("acme", "static:x", bump) for _ in range(25)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("acme", "static:x").consecutive_failures == 101


def test_delivery_records(store: Any) -> None:
    store.record_deliveries("acme", 3, ["a", "b"])
    store.record_deliveries("acme", 3, ["b", "c"])
    store.record_deliveries("acme", 4, ["a"])
    assert store.deliveries("acme", 3) == {"a", "b", "c"} and store.deliveries("other", 3) == set()
    store.save("acme", _sub("c"))
    store.delete("acme", "c")  # a deleted subscription's records go with it
    assert store.deliveries("acme", 3) == {"a", "b"}
    store.forget_deliveries("acme", [3])
    assert store.deliveries("acme", 3) == set() and store.deliveries("acme", 4) == {"a"}


def test_a_sealing_store_keeps_no_secret_in_the_clear_and_reads_secrets_stored_before(tmp_path: Path) -> None:
    import json
    import sqlite3

    plain = SqliteSubscriptionStore(tmp_path)
    plain.save("acme", _sub("old", secret="old-secret-in-the-clear"))
    plain.close()
    store = SqliteSubscriptionStore(tmp_path, sealer=SEALER)
    try:
        store.save("acme", _sub("new", secret="the-new-webhook-secret"))
        assert store.get("acme", "new") == _sub("new", secret="the-new-webhook-secret")
        assert store.get("acme", "old") == _sub("old", secret="old-secret-in-the-clear")  # stored before sealing
        store.modify("acme", "old", lambda current: current)  # written again: sealed from now on
        database = sqlite3.connect(tmp_path / "feed" / "acme.db")
        try:
            docs = {name: json.loads(doc) for name, doc in database.execute("SELECT name, doc FROM subscriptions")}
        finally:
            database.close()
        assert all(doc["secret"].startswith("sealed:v1:") for doc in docs.values())
        assert "the-new-webhook-secret" not in json.dumps(docs) and "old-secret" not in json.dumps(docs)
        assert store.get("acme", "old") == _sub("old", secret="old-secret-in-the-clear")
    finally:
        store.close()
    other = SqliteSubscriptionStore(tmp_path, sealer=KeyHasher("another-secret-01234567").sealer("subscription secrets"))
    try:
        with pytest.raises(SealedValueError, match="another server secret"):
            other.get("acme", "new")
    finally:
        other.close()
