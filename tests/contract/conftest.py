"""The storage adapters the event- and definition-store contract suites run against.

Every test of tests/contract/test_event_store.py and test_definition_store.py runs once per entry of
`STORE_BACKENDS`. To add an adapter, give `Backend` a branch that opens a client of it: `event_store()` and
`definition_store()` may be called more than once in a test and must then return clients of the same storage
(as two worker processes would open), which `close()` closes.

"sqlite-uncached" is the SQLite store without its in-process instance cache, so the paths a cache miss takes
(another process appended, a new process) pass the whole contract too. "cosmos" is the Cosmos store on the
session's cosmosdb-server (tests/cosmos_fixtures.py), in databases new to each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.stores.base import DefinitionStore, EventStore
from engine.stores.memory import MemoryDefinitionStore, MemoryEventStore
from engine.stores.sqlite import SqliteDefinitionStore, SqliteEventStore

STORE_BACKENDS = ["memory", "sqlite", "sqlite-uncached", "cosmos"]


@dataclass
class Backend:
    name: str
    root: Path  # a directory of this test's own, for adapters that keep files
    _memory_events: MemoryEventStore = field(default_factory=MemoryEventStore)
    _memory_definitions: MemoryDefinitionStore = field(default_factory=MemoryDefinitionStore)
    _opened: list[Any] = field(default_factory=list)
    cosmos: Any = None  # "cosmos": a tests.cosmos_fixtures.CosmosSilo (databases of this test on cosmosdb-server)

    def event_store(self) -> EventStore:
        if self.name == "memory":
            return self._memory_events
        if self.name in ("sqlite", "sqlite-uncached"):
            store = SqliteEventStore(self.root, cache_size=0 if self.name == "sqlite-uncached" else 4096)
            self._opened.append(store)
            return store
        if self.name == "cosmos":
            return self.cosmos.event_store()
        raise AssertionError(f"unknown store backend {self.name!r}")

    def definition_store(self) -> DefinitionStore:
        if self.name == "memory":
            return self._memory_definitions
        if self.name in ("sqlite", "sqlite-uncached"):
            store = SqliteDefinitionStore(self.root)
            self._opened.append(store)
            return store
        if self.name == "cosmos":
            return self.cosmos.definition_store()
        raise AssertionError(f"unknown store backend {self.name!r}")

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=STORE_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(request.param, tmp_path)
    if request.param == "cosmos":
        opened.cosmos = request.getfixturevalue("cosmos_silo")
    yield opened
    opened.close()


@pytest.fixture
def event_store(backend: Backend) -> EventStore:
    return backend.event_store()


@pytest.fixture
def definition_store(backend: Backend) -> DefinitionStore:
    return backend.definition_store()
