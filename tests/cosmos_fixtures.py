"""cosmosdb-server (Cosmos DB, from npm) as a real protocol peer for tests.

Registered as a pytest plugin by tests/conftest.py. One server and one `CosmosClient` serve the whole session
(`cosmos_account`); each test gets databases of its own through `cosmos_silo` (every tenant `t` of the test maps
to the database `{prefix}-{t}`, the prefix new per test), so tests never see each other's data:

    def test_something(cosmos_silo: CosmosSilo) -> None:
        store = cosmos_silo.event_store()  # a new store (its own caches) on the session's client

A test that stops a server starts its own (`LocalCosmosServer`, `private_cosmos_server`): the session's keeps
serving the others. The server is `node_modules/@vercel/cosmosdb-server` (installed by `make test`, which runs
`npm ci`); when it is missing the tests that need it FAIL with how to install it, they are not skipped.

cosmosdb-server serves HTTPS with a self-signed certificate, so its clients do not verify TLS
(`connection_verify=False`), and urllib3's InsecureRequestWarning is ignored — that one warning, for the session.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.bench.cosmos_server import CosmosServerMissing, LocalCosmosServer
from engine.drivers.cosmos import CosmosLocation
from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore

_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    # The self-signed certificate of the local server, and nothing else, is not verified.
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def start_local_server() -> LocalCosmosServer:
    """A started server, or the test fails (not skips) saying how to install it."""
    problem = ""
    try:
        return LocalCosmosServer().start()
    except (CosmosServerMissing, RuntimeError) as e:
        problem = str(e)
    pytest.fail(problem, pytrace=False)


@dataclass
class CosmosAccount:
    """The session's server and its one long-lived client."""

    server: LocalCosmosServer
    client: Any

    def silo(self) -> CosmosSilo:
        return CosmosSilo(self, f"t{next(_numbers):04d}{uuid.uuid4().hex[:6]}")


@dataclass
class CosmosSilo:
    """The databases of one test: tenant `t` lives in `{prefix}-{t}`."""

    account: CosmosAccount
    prefix: str
    opened: list[Any] = field(default_factory=list)

    @property
    def client(self) -> Any:
        return self.account.client

    def location(self, tenant: str) -> CosmosLocation:
        return CosmosLocation(f"{self.prefix}-{tenant}")

    def event_store(self, **options: Any) -> CosmosEventStore:
        store = CosmosEventStore(self.client, resolve=self.location, auto_create=True, **options)
        self.opened.append(store)
        return store

    def definition_store(self, **options: Any) -> CosmosDefinitionStore:
        store = CosmosDefinitionStore(self.client, resolve=self.location, auto_create=True, **options)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[LocalCosmosServer]:
    """The session's cosmosdb-server. Do not stop it: a test that stops a server uses `private_cosmos_server`."""
    server = start_local_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def cosmos_account(cosmos_server: LocalCosmosServer) -> CosmosAccount:
    return CosmosAccount(cosmos_server, cosmos_server.client())


@pytest.fixture
def cosmos_silo(cosmos_account: CosmosAccount) -> Iterator[CosmosSilo]:
    silo = cosmos_account.silo()
    yield silo
    silo.close()


@pytest.fixture
def private_cosmos_server() -> Iterator[LocalCosmosServer]:
    """A server of the test's own, which it may `stop()` and `start()` (empty again after a restart)."""
    server = start_local_server()
    try:
        yield server
    finally:
        server.close()
