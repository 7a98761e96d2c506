"""The trigger route calls storage on the event loop only when the store and the queue are embedded (SQLite,
memory files in this process); a store that may cross the network (Cosmos, Azure Storage) is called on a worker
thread, so one slow request never holds up the others. Real uvicorn on loopback."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.api import create_app
from engine.domain import Trigger
from engine.hosting.settings import Settings
from engine.queues.azure import AzureStorageCommandQueue
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import CreateInstance
from engine.service.engine import Engine
from engine.stores.base import embedded
from engine.stores.cosmos import CosmosEventStore
from engine.stores.memory import MemoryDefinitionStore, MemoryEventStore
from engine.stores.routing import TenantRoutedEventStore, TenantStoreRouter
from engine.stores.sqlite import SqliteEventStore
from engine.tenants import MemoryTenantRegistry
from engine.tenants.cosmos import CosmosTenantRegistry
from tests.feed.conftest import api_client

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-key-0123456789abcdef"


class Watched:
    """An event store that records the thread of each call; `embedded` as given (False: as Cosmos says)."""

    def __init__(self, inner: Any, *, embedded: bool) -> None:
        self.inner, self.embedded, self.threads = inner, embedded, list[str]()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            return method(*args, **kwargs)

        return call


@pytest.mark.parametrize("is_embedded", [True, False])
def test_the_trigger_route_calls_a_networked_store_on_a_worker_thread(tmp_path: Path, is_embedded: bool) -> None:
    events = Watched(MemoryEventStore(), embedded=is_embedded)
    engine = Engine(events=events, definitions=MemoryDefinitionStore(), queue=MemoryCommandQueue())  # type: ignore[arg-type]
    engine.catalog.put("acme", json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance("acme", "claim-1", "expense-claim", "c-1", context={"claimant": "Jo"}))
    tenants = MemoryTenantRegistry(secret="test-secret-0123456789")
    tenants.create("acme")
    app = create_app(engine, tenants, Settings(data_dir=tmp_path, admin_key=ADMIN))
    events.threads.clear()
    with api_client(app, Authorization=f"Bearer {ADMIN}") as http:
        response = http.post("/tenants/acme/instances/claim-1/triggers", json={"topic": "update", "id": "t-1",
                                                                              "content": {"amount": 5}})
        assert response.status_code == 202, response.text
        response = http.post("/tenants/acme/instances/nobody/triggers", json={"topic": "update"})
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert events.threads, "the route asked the store"
    on_workers = [name.startswith("waymark-api") for name in events.threads]
    assert all(on_workers) if not is_embedded else not any(on_workers), events.threads
    assert engine.queue.depth() == 1
    assert engine.processor.trigger("acme", "claim-1", Trigger("submit", "t-2")).instance.version == 2


def test_which_components_are_embedded(tmp_path: Path) -> None:
    with SqliteEventStore(tmp_path) as store:
        assert embedded(store, "acme")
    assert embedded(MemoryEventStore(), "acme") and embedded(MemoryCommandQueue(), "acme")
    for networked in (CosmosEventStore, AzureStorageCommandQueue, CosmosTenantRegistry):
        assert not hasattr(networked, "embedded")
    registry = MemoryTenantRegistry(secret="test-secret-0123456789")
    registry.create("local")
    registry.create("remote", config={"store": "cosmos", "cosmosEndpoint": "https://127.0.0.1:1/"})
    routed = TenantRoutedEventStore(TenantStoreRouter(registry, data_dir=tmp_path))
    assert routed.embedded("local") and not routed.embedded("remote")
