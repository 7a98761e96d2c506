"""Stores that route each tenant to the backend its configuration names: storage siloed per tenant.

A tenant's record in the tenant registry carries its configuration (`TenantRecord.config`):

    {"store": "cosmos", "cosmosEndpoint": "https://acct.documents.azure.com:443/", "database": "waymark-acme",
     "eventsContainer": "events", "definitionsContainer": "definitions", "auth": "identity",
     "eventGridTopicEndpoint": "https://…"}

`store` is `sqlite` (the tenant's own file under the data directory) or `cosmos` (its own database in the account
at `cosmosEndpoint`); a record without it uses the router's `default_store`. Every call of the routed stores
resolves the tenant first and then talks only to that tenant's database or file: there is no code path from a
call made for tenant A to tenant B's storage, whatever ids the call carries.

One `CosmosClient` (and one Cosmos store pair) is built per account endpoint, lazily, and shared by every tenant
of that account; it authenticates with the key the host was given for the endpoint (`auth: key`) or with
`DefaultAzureCredential` (`auth: identity`; azure-identity is imported only then). Keys are never stored in the
registry. Configurations are cached for `config_seconds` (a registry read per command would be a request per
trigger on a Cosmos registry); `forget(tenant)` drops one at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.domain import Commit, Event, Instance, StoreUnavailable
from engine.drivers.cosmos import CosmosLocation, cosmos_client
from engine.drivers.sqlite import DURABLE, Synchronous, checked_synchronous
from engine.stores.base import DefinitionStore, EventStore, Page, PendingCommit, append_many, embedded
from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore
from engine.stores.parked import ParkedCommand, ParkedPage, ParkedQuery, ParkedStore, SqliteParkedStore
from engine.stores.parked_cosmos import CosmosParkedStore, ParkedLocation
from engine.tenants import TenantRegistry
from engine.tenants.config import InvalidTenantConfig, TenantConfig, parse_tenant_config

__all__ = ["STORE_KINDS", "TenantRoutedDefinitionStore", "TenantRoutedEventStore", "TenantRoutedParkedStore",
           "TenantStoreRouter", "routed_stores"]

STORE_KINDS = ("sqlite", "cosmos")


@dataclass(frozen=True, slots=True)
class _Account:
    client: Any
    events: CosmosEventStore
    definitions: CosmosDefinitionStore


def _normal_endpoint(endpoint: str) -> str:
    return endpoint.strip().rstrip("/").lower()


class TenantStoreRouter:
    """Picks, per tenant, the SQLite or Cosmos stores its configuration names (see the module docstring).

    - `data_dir`: where the SQLite tenants' files are (`{data_dir}/tenants/{tenant}.db`); needed for `sqlite`.
    - `sqlite_synchronous`: how those files are synced (`full`, durable, or `normal`; WAYMARK_SQLITE_SYNCHRONOUS).
    - `cosmos_endpoint`: the account of Cosmos tenants whose record names none (and of `default_store="cosmos"`).
    - `cosmos_key` / `cosmos_keys`: the account key for every endpoint / per endpoint (`auth: key`).
    - `credential`: a `TokenCredential` for `auth: identity` (default: `DefaultAzureCredential()`, built once).
    - `verify`: verify TLS (False only for a local cosmosdb-server); `auto_create`: create a Cosmos tenant's
      database and containers on first use (key auth; in Azure, infra/tenant.bicep provisions them).
    - `client_options`: more keyword arguments for `cosmos_client` (e.g. a `request_hook`).
    - `clients`: clients the host built already, by endpoint (the Azure host's one client of its platform account),
      used instead of building a second one for the same account.
    """

    def __init__(self, registry: TenantRegistry, *, data_dir: Path | None = None, default_store: str = "sqlite",
                 sqlite_synchronous: Synchronous = DURABLE,
                 cosmos_endpoint: str | None = None, cosmos_key: str | None = None,
                 cosmos_keys: Mapping[str, str] | None = None, credential: Any = None, verify: bool = True,
                 auto_create: bool = False, database_prefix: str = "waymark-", config_seconds: float = 60.0,
                 client_options: Mapping[str, Any] | None = None, clients: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if default_store not in STORE_KINDS:
            raise ValueError(f"default_store must be one of {STORE_KINDS}, not {default_store!r}")
        self.registry = registry
        self.data_dir = data_dir
        self.sqlite_synchronous = checked_synchronous(sqlite_synchronous)
        self.default_store = default_store
        self.cosmos_endpoint = cosmos_endpoint
        self.cosmos_key = cosmos_key
        self.cosmos_keys = {_normal_endpoint(endpoint): key for endpoint, key in (cosmos_keys or {}).items()}
        self.verify = verify
        self.auto_create = auto_create
        self.database_prefix = database_prefix
        self.config_seconds = config_seconds
        self.client_options = dict(client_options or {})
        self._clients = {_normal_endpoint(endpoint): client for endpoint, client in (clients or {}).items()}
        self.clock = clock
        self._credential = credential
        self._lock = threading.Lock()
        self._configs: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self._accounts: dict[str, _Account] = {}
        self._sqlite: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------------------------------ routing

    def config(self, tenant: str) -> Mapping[str, Any]:
        """The tenant's configuration (cached). Raises TenantNotFound for a tenant the registry does not know."""
        now = self.clock()
        cached = self._configs.get(tenant)
        if cached is not None and now - cached[0] < self.config_seconds:
            return cached[1]
        config = dict(self.registry.get(tenant).config)
        with self._lock:
            self._configs[tenant] = (now, config)
        return config

    def parsed(self, tenant: str) -> TenantConfig:
        """The tenant's configuration as engine/tenants/config.py reads it; a record with a wrong value in a known
        key makes the tenant's storage unavailable (the command waits on its queue until the record is fixed)."""
        try:
            return parse_tenant_config(self.config(tenant))
        except InvalidTenantConfig as e:
            raise StoreUnavailable("tenant configuration", f"tenant {tenant!r}: {e}") from e

    def store_kind(self, tenant: str) -> str:
        return self.parsed(tenant).store or self.default_store

    def location(self, tenant: str) -> CosmosLocation:
        """Where a Cosmos tenant's data is: its configuration's names, else `{prefix}{tenant}`/events/definitions."""
        config = self.parsed(tenant)
        return CosmosLocation(config.database or f"{self.database_prefix}{tenant}", config.events_container,
                              config.definitions_container)

    def event_store(self, tenant: str) -> EventStore:
        if self.store_kind(tenant) == "cosmos":
            return self._account(tenant).events
        events: EventStore = self._sqlite_stores()[0]
        return events

    def definition_store(self, tenant: str) -> DefinitionStore:
        if self.store_kind(tenant) == "cosmos":
            return self._account(tenant).definitions
        definitions: DefinitionStore = self._sqlite_stores()[1]
        return definitions

    def cosmos_client(self, tenant: str) -> Any:
        """The client of a Cosmos tenant's account (shared by every tenant of that account)."""
        return self._account(tenant).client

    def forget(self, tenant: str) -> None:
        """Read the tenant's configuration again on its next call (after it changed)."""
        with self._lock:
            self._configs.pop(tenant, None)
            accounts = list(self._accounts.values())
        for account in accounts:
            account.events.forget(tenant)
            account.definitions.forget(tenant)

    def close(self) -> None:
        with self._lock:
            sqlite, self._sqlite = self._sqlite, None
            accounts, self._accounts = list(self._accounts.values()), {}
        if sqlite is not None:
            for store in sqlite:
                store.close()
        for account in accounts:
            account.events.close()  # marks the feed positions it kept as gaps, while the client is still open
            closer = getattr(account.client, "close", None)
            if callable(closer):
                closer()

    # ------------------------------------------------------------------------------------------ backends

    def _sqlite_stores(self) -> tuple[Any, Any]:
        stores = self._sqlite
        if stores is not None:
            return stores
        if self.data_dir is None:
            raise StoreUnavailable("sqlite", "this host has no data directory for SQLite tenants")
        from engine.stores.sqlite import SqliteDefinitionStore, SqliteEventStore

        with self._lock:
            if self._sqlite is None:
                self._sqlite = (SqliteEventStore(self.data_dir, synchronous=self.sqlite_synchronous),
                                SqliteDefinitionStore(self.data_dir, synchronous=self.sqlite_synchronous))
            return self._sqlite

    def _account(self, tenant: str) -> _Account:
        config = self.parsed(tenant)
        endpoint = config.cosmos_endpoint or self.cosmos_endpoint or ""
        if not endpoint:
            raise StoreUnavailable("cosmos", f"tenant {tenant!r} has no cosmosEndpoint and the host no default one")
        normal = _normal_endpoint(endpoint)
        account = self._accounts.get(normal)
        if account is not None:
            return account
        with self._lock:
            account = self._accounts.get(normal)
            if account is None:
                client = self._client(endpoint, config.auth or "")
                account = _Account(client,
                                   CosmosEventStore(client, resolve=self.location, auto_create=self.auto_create),
                                   CosmosDefinitionStore(client, resolve=self.location, auto_create=self.auto_create))
                self._accounts[normal] = account
            return account

    def _client(self, endpoint: str, auth: str) -> Any:
        shared = self._clients.get(_normal_endpoint(endpoint))
        if shared is not None:
            return shared
        key = self.cosmos_keys.get(_normal_endpoint(endpoint), self.cosmos_key)
        if auth == "key" and key is None:
            raise StoreUnavailable("cosmos", f"{endpoint}: key auth, and this host was given no key for it")
        if auth == "identity" or key is None:
            return cosmos_client(endpoint, credential=self._identity(), verify=self.verify, **self.client_options)
        return cosmos_client(endpoint, key=key, verify=self.verify, **self.client_options)

    def _identity(self) -> Any:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential  # only hosts that use Entra ID need it loaded

            self._credential = DefaultAzureCredential()
        return self._credential


class TenantRoutedEventStore:
    """The `EventStore` port, each call made on the store of its tenant's backend."""

    def __init__(self, router: TenantStoreRouter) -> None:
        self.router = router

    def embedded(self, tenant: str) -> bool:
        """A tenant on SQLite whose configuration is read from a local registry (see base.embedded)."""
        return embedded(self.router.registry, tenant) and self.router.store_kind(tenant) == "sqlite"

    def append(self, tenant: str, instance_id: str, expected_version: int, events: Sequence[Event], *,
               state: Instance) -> Commit:
        return self.router.event_store(tenant).append(tenant, instance_id, expected_version, events, state=state)

    def append_many(self, tenant: str, commits: Sequence[PendingCommit]) -> list[Commit | Exception]:
        """The tenant's store's group commit where it has one (SQLite: one transaction, one sync of the file)."""
        return append_many(self.router.event_store(tenant), tenant, commits)

    def load(self, tenant: str, instance_id: str) -> Instance:
        return self.router.event_store(tenant).load(tenant, instance_id)

    def read(self, tenant: str, instance_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        return self.router.event_store(tenant).read(tenant, instance_id, after=after, limit=limit)

    def find_trigger(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        return self.router.event_store(tenant).find_trigger(tenant, instance_id, trigger_id)

    def list_instances(self, tenant: str, *, status: str | None = None, workflow_id: str | None = None,
                       state: str | None = None, limit: int = 100, continuation: str | None = None) -> Page:
        return self.router.event_store(tenant).list_instances(tenant, status=status, workflow_id=workflow_id,
                                                              state=state, limit=limit, continuation=continuation)

    def interested(self, tenant: str, subjects: Sequence[str]) -> list[str]:
        return self.router.event_store(tenant).interested(tenant, subjects)

    def read_feed(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[Commit]:
        return self.router.event_store(tenant).read_feed(tenant, after=after, limit=limit)

    def undispatched(self, tenant: str, *, committed_before: str | None = None, limit: int = 100) -> list[Commit]:
        return self.router.event_store(tenant).undispatched(tenant, committed_before=committed_before, limit=limit)

    def mark_dispatched(self, tenant: str, positions: Sequence[int]) -> None:
        self.router.event_store(tenant).mark_dispatched(tenant, positions)

    def ping(self, tenant: str) -> None:
        self.router.event_store(tenant).ping(tenant)

    def repair_index(self, tenant: str, *, limit: int = 1000) -> int:
        """Cosmos tenants: bring the instance index up to every commit (see CosmosEventStore.repair_index);
        SQLite tenants keep it in the commit's transaction, so there is nothing to do (0)."""
        store = self.router.event_store(tenant)
        repair = getattr(store, "repair_index", None)
        return int(repair(tenant, limit=limit)) if callable(repair) else 0

    def close(self) -> None:
        self.router.close()


class TenantRoutedDefinitionStore:
    """The `DefinitionStore` port, each call made on the store of its tenant's backend."""

    def __init__(self, router: TenantStoreRouter) -> None:
        self.router = router

    def put(self, tenant: str, document: Mapping[str, Any], *, expected_version: int | None = None) -> int:
        return self.router.definition_store(tenant).put(tenant, document, expected_version=expected_version)

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        return self.router.definition_store(tenant).get(tenant, workflow_id, version)

    def list(self, tenant: str) -> list[tuple[str, int]]:
        return self.router.definition_store(tenant).list(tenant)

    def close(self) -> None:
        self.router.close()


class TenantRoutedParkedStore:
    """The `ParkedStore` port (engine/stores/parked.py), each tenant's parked commands in its own storage: a table of
    its SQLite file, or the `parked` container (or its configuration's `parkedContainer`) of its Cosmos database."""

    def __init__(self, router: TenantStoreRouter) -> None:
        self.router = router
        self._lock = threading.Lock()
        self._sqlite: SqliteParkedStore | None = None
        self._cosmos = CosmosParkedStore(self._locate, auto_create=router.auto_create)

    def embedded(self, tenant: str) -> bool:
        return embedded(self.router.registry, tenant) and self.router.store_kind(tenant) == "sqlite"

    def park(self, tenant: str, command: ParkedCommand) -> None:
        self._store(tenant).park(tenant, command)

    def get(self, tenant: str, parked_id: str) -> ParkedCommand:
        return self._store(tenant).get(tenant, parked_id)

    def list(self, tenant: str, query: ParkedQuery = ParkedQuery(), *, limit: int = 100,
             continuation: str | None = None) -> ParkedPage:
        return self._store(tenant).list(tenant, query, limit=limit, continuation=continuation)

    def remove(self, tenant: str, parked_id: str) -> bool:
        return self._store(tenant).remove(tenant, parked_id)

    def close(self) -> None:
        with self._lock:
            sqlite, self._sqlite = self._sqlite, None
        if sqlite is not None:
            sqlite.close()
        self._cosmos.close()

    def _store(self, tenant: str) -> ParkedStore:
        if self.router.store_kind(tenant) == "cosmos":
            return self._cosmos
        if self.router.data_dir is None:
            raise StoreUnavailable("sqlite", "this host has no data directory for SQLite tenants")
        with self._lock:
            if self._sqlite is None:
                self._sqlite = SqliteParkedStore(self.router.data_dir, synchronous=self.router.sqlite_synchronous)
            return self._sqlite

    def _locate(self, tenant: str) -> ParkedLocation:
        return ParkedLocation(self.router.cosmos_client(tenant), self.router.location(tenant).database,
                              self.router.parsed(tenant).parked_container)


def routed_stores(registry: TenantRegistry, **options: Any) -> tuple[TenantRoutedEventStore,
                                                                      TenantRoutedDefinitionStore]:
    """The event and definition stores of a host whose tenants may live on SQLite or on Cosmos, sharing one router
    (`options`: those of `TenantStoreRouter`). E.g. `waymark serve --store cosmos --cosmos-endpoint E --cosmos-key K`:

        events, definitions = routed_stores(registry, data_dir=data_dir, default_store="cosmos",
                                            cosmos_endpoint=E, cosmos_key=K, auto_create=True)
    """
    router = TenantStoreRouter(registry, **options)
    return TenantRoutedEventStore(router), TenantRoutedDefinitionStore(router)
