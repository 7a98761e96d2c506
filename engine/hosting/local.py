"""The local host (`waymark serve`, `waymark worker`): the engine, the tenant registry, the change feed and the
app of a data directory, built from `Settings`; engine/cli/serve.py is the command that runs them.

The pieces are reusable by tests and benchmarks: `open_service` builds the engine, the tenant registry and
the app from settings (first start included), `open_engine` the engine alone (what a separate worker process
needs), `bind` and `uvicorn_config` make the listening socket and the server configuration every host here uses;
`WorkerPool` (engine/hosting/worker.py) runs the queue workers.

Storage: each tenant's events and definitions are where its configuration says (engine/stores/routing.py), a
SQLite file under the data directory or a database of its own on Cosmos DB; a tenant that names no store uses
`--store` (WAYMARK_STORE, default sqlite). The tenant registry, the command queue and the feed's subscriptions
stay in the data directory. With `--store cosmos`, a new tenant's record names its Cosmos database
(`{WAYMARK_TENANT_DATABASE_PREFIX}{tenant}` in the account at `--cosmos-endpoint`), created when it is onboarded.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when used, so that `waymark --help` and the remote commands start fast
    import uvicorn
    from fastapi import FastAPI

    from engine.feed import ChangeFeed
    from engine.hosting.settings import Settings
    from engine.service.engine import Engine
    from engine.tenants import Defaults, SqliteTenantRegistry, TenantRegistry

log = logging.getLogger("waymark.serve")

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEMO_TENANT = "demo"


@dataclass
class FirstStart:
    """What a first start created, to show once."""

    demo_key: str | None
    samples: list[str]


@dataclass
class Service:
    settings: Settings  # with the admin key resolved
    engine: Engine
    tenants: SqliteTenantRegistry
    app: FastAPI
    admin_key_source: str  # "generated", "file" ({data_dir}/admin-key) or "environment"
    first_start: FirstStart | None
    feed: ChangeFeed

    @property
    def admin_key(self) -> str:
        assert self.settings.admin_key is not None
        return self.settings.admin_key

    def close(self) -> None:
        self.feed.close()  # first: deliveries in flight finish while the stores are still open
        self.app.state.waymark.close()
        _close(self.engine.parked_store, self.engine.events, self.engine.definitions, self.engine.queue, self.tenants,
               self.engine.services.http)


def _close(*parts: object) -> None:
    for part in parts:
        close = getattr(part, "close", None)
        if callable(close):
            close()


def open_service(settings: Settings) -> Service:
    """The engine, registry and app of a data directory; on first start, the demo tenant and its samples."""
    from engine.api import create_app
    from engine.api.feed_routes import feed_router
    from engine.tenants import new_key, read_or_create_secret

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    admin_key, source = settings.admin_key, "environment"
    if admin_key is None:
        admin_key, generated = read_or_create_secret(data_dir / "admin-key", factory=lambda: new_key("wma_"))
        source = "generated" if generated else "file"
    settings = settings.model_copy(update={"admin_key": admin_key})
    tenants = open_tenants(settings)
    engine = open_engine(settings, tenants)
    try:
        first_start = bootstrap(engine, tenants, settings)
        feed = open_feed(engine, tenants, settings)
    except BaseException:
        _close(engine.parked_store, engine.events, engine.definitions, engine.queue, tenants)
        raise
    app = create_app(engine, tenants, settings, routers=[feed_router(feed)])
    return Service(settings, engine, tenants, app, source, first_start, feed)


def open_tenants(settings: Settings) -> SqliteTenantRegistry:
    """The tenant registry of the data directory (`tenants.db`), keys hashed with the server secret. With
    `store: cosmos`, a tenant created without a configuration naming its store is recorded on Cosmos."""
    from engine.tenants import SqliteTenantRegistry, read_or_create_secret

    secret = settings.secret or read_or_create_secret(settings.data_dir / "secret")[0]
    return SqliteTenantRegistry(settings.data_dir / "tenants.db", secret=secret, defaults=tenant_defaults(settings),
                                synchronous=settings.sqlite_synchronous)


def tenant_defaults(settings: Settings) -> Defaults | None:
    """The configuration a new tenant gets when it names no store: with `store: cosmos`, its own database in the
    account at `cosmos_endpoint` (key auth when the host has a key, else `DefaultAzureCredential`). With SQLite,
    none (a record without a store uses the host's default, the data directory)."""
    if settings.store != "cosmos":
        return None
    from engine.drivers.cosmos import CosmosLocation
    from engine.tenants.onboarding import cosmos_tenant_config

    endpoint = str(settings.cosmos_endpoint)
    auth = "key" if settings.cosmos_key else "identity"
    prefix = settings.tenant_database_prefix

    def defaults(tenant_id: str) -> dict[str, Any]:
        return cosmos_tenant_config(endpoint=endpoint, location=CosmosLocation(f"{prefix}{tenant_id}"), auth=auth)

    return defaults


def open_engine(settings: Settings, tenants: TenantRegistry) -> Engine:
    """The engine of a data directory: each tenant's events and definitions where its configuration says (SQLite
    under the data directory, or Cosmos; `settings.store` for a tenant that names none; a Cosmos tenant's
    database and containers created on its first use if missing, which takes a key or an identity allowed to),
    and the SQLite command queue."""
    from engine.domain import ActionRetries, ExpressionBudget, Services
    from engine.outbound import DestinationPolicy, ManagedIdentityTokens, OutboundClient
    from engine.queues.sqlite import SqliteCommandQueue
    from engine.service.engine import Engine
    from engine.service.holding import CircuitBreakers, HoldPolicy
    from engine.service.http_port import HttpxPort
    from engine.stores.routing import TenantRoutedParkedStore, routed_stores
    from engine.tenants import DEFINITION_SECRETS, sealer_of

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    events, definitions = routed_stores(tenants, data_dir=data_dir, default_store=settings.store,
                                        cosmos_endpoint=settings.cosmos_endpoint, cosmos_key=settings.cosmos_key,
                                        verify=settings.cosmos_verify, auto_create=True,
                                        database_prefix=settings.tenant_database_prefix,
                                        sqlite_synchronous=settings.sqlite_synchronous)
    queue = SqliteCommandQueue(data_dir / "queue.db", max_dequeue_count=settings.max_dequeue_count,
                               synchronous=settings.sqlite_synchronous)
    # `http` conditions and actions call out through the outbound client (engine/outbound) webhooks use too.
    budget = ExpressionBudget(max_steps=settings.expression_max_steps, max_seconds=settings.expression_max_seconds)
    http = HttpxPort(OutboundClient(DestinationPolicy(allow_private=settings.allow_private_destinations)),
                     max_seconds=settings.outbound_max_seconds, max_body_bytes=settings.outbound_max_response_bytes,
                     tokens=ManagedIdentityTokens())  # DefaultAzureCredential, built when first asked
    return Engine(events=events, definitions=definitions, queue=queue,
                  services=Services(http=http, expression_budget=budget,
                                    audit_content_limit=settings.audit_content_bytes,
                                    retries=ActionRetries(max_seconds=settings.outbound_action_max_seconds)),
                  parked_store=TenantRoutedParkedStore(events.router),
                  hold=HoldPolicy(base_delay=settings.hold_base_delay, max_delay=settings.hold_max_delay,
                                  hold_seconds=settings.hold_seconds),
                  breakers=CircuitBreakers(threshold=settings.breaker_threshold, cooldown=settings.breaker_cooldown,
                                           max_cooldown=settings.hold_max_delay),
                  sealer=sealer_of(tenants, DEFINITION_SECRETS))


def open_feed(engine: Engine, tenants: TenantRegistry, settings: Settings) -> ChangeFeed:
    """The change feed of a local engine: subscriptions under `{data_dir}/feed/`, wired as the engine's outbox."""
    from engine.feed import ChangeFeed, SqliteSubscriptionStore, parse_static_subscriptions
    from engine.feed.pausing import ResumePolicy
    from engine.outbound import ManagedIdentityTokens
    from engine.tenants import sealer_of

    subscriptions = SqliteSubscriptionStore(settings.data_dir, sealer=sealer_of(tenants, "subscription secrets"),
                                            synchronous=settings.sqlite_synchronous)
    feed = ChangeFeed(engine.events, subscriptions, definitions=engine.catalog,
                      static=parse_static_subscriptions(settings.feed_subscriptions),
                      tenant_config=lambda tenant: tenants.get(tenant).config,
                      tenants=lambda: [record.id for record in tenants.list()],
                      origin=settings.feed_origin, allow_private_destinations=settings.allow_private_destinations,
                      webhook_timeout=settings.feed_timeout_seconds, tokens=ManagedIdentityTokens(),
                      grace_seconds=settings.feed_grace_seconds,
                      pause_after=settings.feed_pause_after,
                      max_workers=settings.feed_threads, tenant_concurrency=settings.feed_tenant_concurrency,
                      lane_concurrency=settings.feed_subscription_concurrency,
                      resume_policy=ResumePolicy(settings.feed_resume_after, settings.feed_resume_max),
                      max_subscriptions=settings.max_subscriptions_per_tenant, schema_base=settings.schema_base)
    engine.processor.on_commit = feed.on_commit
    engine.feed_attention = feed.attention
    return feed


def bootstrap(engine: Engine, tenants: TenantRegistry, settings: Settings) -> FirstStart | None:
    """With no tenant yet (and `load_samples`): the `demo` tenant, with the sample workflows loaded.

    On a later start with `demo_key` set, the demo tenant's key is made that key, so the environment is the
    truth about it.
    """
    from engine.domain import InvalidDefinition, load_json

    if not settings.load_samples:
        return None
    if tenants.list():
        if settings.demo_key is not None and _has_tenant(tenants, DEMO_TENANT):
            found = tenants.authenticate(settings.demo_key)
            if found is None or found.id != DEMO_TENANT:
                tenants.rotate_key(DEMO_TENANT, key=settings.demo_key)
        return None
    reach_cosmos(settings)  # before the demo tenant is recorded: a failed first start can simply be run again
    record, key = tenants.create(DEMO_TENANT, key=settings.demo_key)
    engine.events.ping(record.id)  # creates its storage
    loaded = []
    for path in sorted(SAMPLES.glob("*.json")):
        try:
            definition = engine.catalog.put(record.id, load_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, InvalidDefinition) as e:
            log.warning("sample %s was not loaded: %s", path.name, e)
            continue
        loaded.append(definition.id)
    return FirstStart(None if settings.demo_key else key, loaded)


def reach_cosmos(settings: Settings) -> None:
    """With `store: cosmos`, raise StoreUnavailable unless the account answers (one read of the account)."""
    if settings.store != "cosmos":
        return
    from engine.drivers.cosmos import cosmos_client

    credential = None
    if not settings.cosmos_key:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    client = cosmos_client(str(settings.cosmos_endpoint), key=settings.cosmos_key or None, credential=credential,
                           verify=settings.cosmos_verify)
    client.close()


def _has_tenant(tenants: TenantRegistry, tenant: str) -> bool:
    return any(record.id == tenant for record in tenants.list())


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts, so port 0 gives a free port known at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # Nagle's algorithm and delayed ACKs add ~40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """The uvicorn settings of every Waymark server (`serve`, the test fixture, both servers of the bench)."""
    import uvicorn

    return uvicorn.Config(app, log_level=settings.log_level, access_log=settings.access_log, lifespan="off",
                          timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout), server_header=False,
                          root_path=settings.root_path)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def configure_logging(level: str) -> Callable[[], None]:
    """The engine's log lines to stderr, with their fields (tenant, instance, trigger, sequence); returns the undo."""
    from engine.hosting.observability import configure_logging as structured

    return structured(level)


