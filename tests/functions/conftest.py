"""Fixtures of the Functions tests: the app settings of a host on Azurite and a cosmosdb-server, each test with a
queue, a registry database and tenant databases of its own; the process's host of function_app.py built with them
(and closed after the test); a webhook receiver and an Event Grid-shaped receiver."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.drivers.cosmos import CosmosLocation, cosmos_client
from engine.hosting.azure import AzureHost
from engine.stores.cosmos import CosmosEventStore
from tests.azure_fixtures import AzuriteServer
from tests.functions.harness import HostQueue, function_app
from tests.webhook_receiver import Receiver

ADMIN_KEY = "admin-key-for-the-functions-tests-0123"
SECRET = "secret-for-the-functions-tests-0123456"
GRID_KEY = "event-grid-topic-key-0123456789"
GRID_KEY_SETTING = "WAYMARK_TEST_EVENT_GRID_KEY"  # the tenant's configuration names it (`eventGrid.keyEnv`)
LOCAL_COSMOS_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


@dataclass
class AzureEnv:
    """The app settings of one test's host, and views of its storage that do not go through the host."""

    azurite: AzuriteServer
    cosmos_endpoint: str
    queue_name: str
    registry_database: str
    tenant_prefix: str
    values: dict[str, str]
    clients: list[Any] = field(default_factory=list)  # closed when the test ends

    def host_queue(self, visibility_timeout: int = 30) -> HostQueue:
        return HostQueue(self.azurite.connection_string, self.queue_name, visibility_timeout)

    def event_store(self) -> CosmosEventStore:
        """The tenants' events read with a client and store of their own (no cache shared with the host)."""
        client = cosmos_client(self.cosmos_endpoint, key=LOCAL_COSMOS_KEY, verify=False)
        self.clients.append(client)
        return CosmosEventStore(client, resolve=lambda tenant: CosmosLocation(f"{self.tenant_prefix}{tenant}"))


@pytest.fixture
def make_env(monkeypatch: pytest.MonkeyPatch, azurite: AzuriteServer) -> Iterator[Callable[[str], AzureEnv]]:
    made: list[AzureEnv] = []

    def make(cosmos_endpoint: str) -> AzureEnv:
        run = uuid.uuid4().hex[:8]
        values = {
            "WAYMARK_STORE": "cosmos",
            "WAYMARK_COSMOS_ENDPOINT": cosmos_endpoint,
            "WAYMARK_COSMOS_KEY": LOCAL_COSMOS_KEY,
            "WAYMARK_COSMOS_VERIFY_TLS": "false",
            "WAYMARK_TENANT_REGISTRY_DATABASE": f"registry-{run}",
            "WAYMARK_TENANT_REGISTRY_CONTAINER": "tenants",
            "WAYMARK_TENANT_DATABASE_PREFIX": f"fn-{run}-",
            "WAYMARK_QUEUE_NAME": f"commands-{run}",
            "WAYMARK_QUEUE": azurite.connection_string,
            "WAYMARK_ADMIN_KEY": ADMIN_KEY,
            "WAYMARK_SECRET": SECRET,
            "WAYMARK_SWEEP_SCHEDULE": "0 */1 * * * *",
            "WAYMARK_OUTBOX_GRACE_SECONDS": "0",
            "WAYMARK_LOG_LEVEL": "info",
            GRID_KEY_SETTING: GRID_KEY,
        }
        for name in ("WAYMARK_QUEUE__queueServiceUri", "WAYMARK_QUEUE__credential", "WAYMARK_QUEUE__clientId",
                     "AZURE_CLIENT_ID", "APPLICATIONINSIGHTS_CONNECTION_STRING", "WAYMARK_MAX_WAIT_SECONDS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        env = AzureEnv(azurite, cosmos_endpoint, values["WAYMARK_QUEUE_NAME"],
                       values["WAYMARK_TENANT_REGISTRY_DATABASE"], values["WAYMARK_TENANT_DATABASE_PREFIX"], values)
        made.append(env)
        return env

    yield make
    for env in made:  # an unclosed client's sockets would be reported (as errors) during a later test
        for client in env.clients:
            client.close()


@pytest.fixture
def app_host() -> Iterator[Callable[..., None]]:
    """Make function_app's process host build from the environment with these local-only options; closed after
    the test (and the next test builds its own)."""
    holder = function_app().waymark

    def use(**options: Any) -> None:
        options.setdefault("allow_private_destinations", True)  # the receivers are on loopback
        options.setdefault("create_missing", True)  # Azurite's queues, cosmosdb-server's databases
        holder.use(lambda: AzureHost.from_environment(**options))

    yield use
    holder.close()


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def grid() -> Iterator[Receiver]:
    """An Event Grid-shaped receiver: the real EventGridPublisherClient posts CloudEvent batches to it."""
    server = Receiver()
    yield server
    server.close()
