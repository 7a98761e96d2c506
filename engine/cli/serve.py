"""`waymark serve`: the API under uvicorn and the queue workers in one process, on a local data directory.

The pieces are reusable by tests and benchmarks: `open_service` builds the engine, the tenant registry and
the app from settings (first start included), `open_engine` the engine alone (what a separate worker process
needs), `WorkerPool` runs the queue workers, `bind` and `uvicorn_config` make the listening socket and the
server configuration every host here uses.

Storage: each tenant's events and definitions are where its configuration says (engine/stores/routing.py), a
SQLite file under the data directory or a database of its own on Cosmos DB; a tenant that names no store uses
`--store` (WAYMARK_STORE, default sqlite). The tenant registry, the command queue and the feed's subscriptions
stay in the data directory. With `--store cosmos`, a new tenant's record names its Cosmos database
(`{WAYMARK_TENANT_DATABASE_PREFIX}{tenant}` in the account at `--cosmos-endpoint`), created when it is onboarded.

Shutdown (SIGINT, SIGTERM): uvicorn stops accepting and lets in-flight requests finish (up to
`shutdown_timeout`), then the workers are stopped: each finishes the command at hand and hands back the rest of
its batch to the queue. A command is deleted from the queue only after its commit is stored, so nothing
accepted is lost, whatever moment the signal comes.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from engine.cli import render
from engine.domain.errors import WaymarkError

if TYPE_CHECKING:  # imported when used, so that `waymark --help` and the remote commands start fast
    import uvicorn
    from fastapi import FastAPI

    from engine.feed import ChangeFeed
    from engine.runtime import Engine
    from engine.settings import Settings
    from engine.tenants import Defaults, SqliteTenantRegistry, TenantRegistry

log = logging.getLogger("waymark.serve")

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEMO_TENANT = "demo"
DASHBOARD = "/ui"  # engine.ui.MOUNT, not imported: `waymark --help` must not load the web stack


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
    from engine.stores.cosmos import CosmosLocation
    from engine.tenants_cosmos import cosmos_tenant_config

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
    from engine.runtime import Engine
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
    from engine.stores.cosmos import cosmos_client

    credential = None
    if not settings.cosmos_key:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    client = cosmos_client(str(settings.cosmos_endpoint), key=settings.cosmos_key or None, credential=credential,
                           verify=settings.cosmos_verify)
    client.close()


def _has_tenant(tenants: TenantRegistry, tenant: str) -> bool:
    return any(record.id == tenant for record in tenants.list())


class WorkerPool:
    """N queue worker threads sharing one engine; `stop` lets each finish the command at hand.

    Fairness (engine/service/fairness.py): one tenant's commands occupy at most `tenant_workers` of them (default:
    half, at least one); a watchdog thread hands back the rest of a batch a slow command holds up."""

    def __init__(self, engine: Engine, count: int, *, visibility_timeout: float = 30.0,
                 tenant_workers: int | None = None, batch_size: int = 16, daemon: bool = True,
                 poison_drain_seconds: float = 60.0) -> None:
        from engine.service.fairness import TenantGate, default_tenant_workers

        self.engine = engine
        self.count = count
        self.visibility_timeout = visibility_timeout
        self.batch_size = batch_size
        self.daemon = daemon
        self.poison_drain_seconds = poison_drain_seconds
        self.gate = TenantGate(tenant_workers or default_tenant_workers(count))
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        from engine.service.fairness import HandBack
        from engine.service.worker import Worker, drain_poison_loop

        if self.count:  # what the queue poisoned for a known tenant goes to its parked store
            drainer = threading.Thread(target=drain_poison_loop, name="waymark-poison-drain", daemon=True,
                                       args=(self.engine.queue, self.engine.parked, self.stop_event,
                                             self.poison_drain_seconds))
            drainer.start()
            self.threads.append(drainer)
        workers = [Worker(self.engine.queue, self.engine.processor, visibility_timeout=self.visibility_timeout,
                          batch_size=self.batch_size, failures=self.engine.failures, gate=self.gate)
                   for _ in range(self.count)]
        for number, worker in enumerate(workers):
            thread = threading.Thread(target=worker.run, args=(self.stop_event,), name=f"waymark-worker-{number}",
                                      daemon=self.daemon)
            thread.start()
            self.threads.append(thread)
        if workers:
            watchdog = HandBack(self.engine.queue, lambda: [worker.batch for worker in workers])
            thread = threading.Thread(target=watchdog.run, args=(self.stop_event,), name="waymark-hand-back",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop and join every worker; False if one is still busy after `timeout` seconds."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self.threads)


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
    from engine.observability import configure_logging as structured

    return structured(level)


def say(text: str) -> None:
    """One line for people: no wrapping (keys and the export line must copy whole), no auto-highlighting."""
    render.console.print(text, highlight=False, soft_wrap=True)


def banner(service: Service, url: str) -> None:
    settings = service.settings
    say(f"[bold green]Waymark[/] serving on [bold]{url}[/] (data in {settings.data_dir.resolve()}, "
        f"{settings.workers} worker(s))")
    say(f"  dashboard: [bold]{url}{DASHBOARD}/[/] · API docs: {url}/docs (Swagger UI), {url}/redoc")
    if settings.store == "cosmos":
        say(f"  store: cosmos at {settings.cosmos_endpoint} (a database per tenant, "
            f"{settings.tenant_database_prefix}{{tenant}}; "
            f"{'key auth' if settings.cosmos_key else 'DefaultAzureCredential'})")
    if settings.allow_private_destinations:
        say("  [yellow]local mode[/]: outbound calls (webhooks, http actions and conditions) may reach loopback and "
            "private addresses; WAYMARK_ALLOW_PRIVATE_DESTINATIONS=false refuses them, as the Azure host always does")
    key_file = settings.data_dir / "admin-key"
    if service.admin_key_source == "generated":
        say(f"  admin key: [bold]{service.admin_key}[/] (kept in {key_file}, mode 0600)")
    elif service.admin_key_source == "file":
        say(f"  admin key: in {key_file}")
    else:
        say("  admin key: from WAYMARK_ADMIN_KEY")
    first = service.first_start
    demo_key = first.demo_key if first else None
    if first is not None:
        say(f"  created tenant [bold]{DEMO_TENANT}[/] with workflows: {', '.join(first.samples) or '-'}")
        if demo_key:
            say(f"  demo tenant key: [bold]{demo_key}[/] (shown once)")
        else:
            say("  demo tenant key: from WAYMARK_DEMO_KEY")
    shown_key = demo_key or ("$WAYMARK_DEMO_KEY" if settings.demo_key else "<the demo tenant key>")
    say(f"  export WAYMARK_URL={url} WAYMARK_KEY={shown_key}")
    if first is None and not settings.demo_key:
        say(f"  (a tenant key is shown once; a new one: waymark tenants rotate-key demo --url {url} "
            f"--key <admin key>)")


def serve(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory [env WAYMARK_DATA_DIR; "
                                                                     "default ./.waymark].")] = None,
    host: Annotated[str | None, typer.Option(help="Interface [env WAYMARK_HOST; default 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port, 0 for any free one [env WAYMARK_PORT; default 8080].")]
    = None,
    workers: Annotated[int | None, typer.Option(help="Queue worker threads [env WAYMARK_WORKERS; default 2].")]
    = None,
    log_level: Annotated[str | None, typer.Option(help="Log level [env WAYMARK_LOG_LEVEL; default warning].")]
    = None,
    store: Annotated[str | None, typer.Option(help="Where tenants that name no store keep their events and "
                                                   "definitions: sqlite or cosmos [env WAYMARK_STORE; default "
                                                   "sqlite].")] = None,
    cosmos_endpoint: Annotated[str | None, typer.Option("--cosmos-endpoint", help="Cosmos DB account endpoint "
                                                                                  "[env WAYMARK_COSMOS_ENDPOINT]."
                                                        )] = None,
    cosmos_key: Annotated[str | None, typer.Option("--cosmos-key", help="Cosmos DB account key [env "
                                                                        "WAYMARK_COSMOS_KEY, which keeps it out of "
                                                                        "the process list; none: "
                                                                        "DefaultAzureCredential].")] = None,
    cosmos_no_verify: Annotated[bool, typer.Option("--cosmos-no-verify", help="Do not verify the Cosmos endpoint's "
                                                                              "TLS certificate: a local "
                                                                              "cosmosdb-server only [env "
                                                                              "WAYMARK_COSMOS_VERIFY=false].")]
    = False,
    root_path: Annotated[str | None, typer.Option("--root-path", help="Path prefix a reverse proxy serves the API "
                                                                      "under [env WAYMARK_ROOT_PATH].")] = None,
) -> None:
    """Serve the HTTP API with in-process queue workers on a local data directory (SQLite, or Cosmos DB with
    --store cosmos)."""
    from engine.settings import Settings

    flags: dict[str, Any] = {"data_dir": data_dir, "host": host, "port": port, "workers": workers,
                             "log_level": log_level, "store": store, "cosmos_endpoint": cosmos_endpoint,
                             "cosmos_key": cosmos_key, "cosmos_verify": False if cosmos_no_verify else None,
                             "root_path": root_path}
    try:
        settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as e:
        for error in e.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            say(f"[red]setting {where}: {message}[/]" if where else f"[red]{message}[/]")
        raise typer.Exit(2) from e
    run(settings)


def _quiet_unverified_tls(settings: Settings) -> None:
    """Say once that TLS is not verified, instead of urllib3's warning on every request to Cosmos."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.simplefilter("ignore", InsecureRequestWarning)
    if settings.store == "cosmos" or settings.cosmos_endpoint:
        say("[yellow]the Cosmos endpoint's TLS certificate is not verified (--cosmos-no-verify): for a local "
            "cosmosdb-server only[/]")


def run(settings: Settings) -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    # uvicorn captures SIGINT/SIGTERM while it runs and raises them again once it has stopped: these handlers
    # receive them then, so a Ctrl-C ends in a clean exit 0 instead of a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    undo_logging = configure_logging(settings.log_level)
    try:
        try:
            sock = bind(settings.host, settings.port)
        except OSError as e:
            say(f"[red]cannot listen on {settings.host}:{settings.port}: {e}[/]")
            raise typer.Exit(2) from e
        if not settings.cosmos_verify:
            _quiet_unverified_tls(settings)
        try:
            service = open_service(settings)
        except BaseException as e:
            sock.close()
            if isinstance(e, WaymarkError):  # e.g. the Cosmos account cannot be reached on a first start
                say(f"[red]cannot start: {escape(str(e))}[/]")
                raise typer.Exit(2) from e
            raise
        pool = WorkerPool(service.engine, settings.workers, visibility_timeout=settings.visibility_timeout,
                          tenant_workers=settings.tenant_workers)
        try:
            pool.start()
            service.feed.start(sweep_interval=settings.feed_sweep_seconds)
            banner(service, url_of(sock))
            if not stopping.is_set():
                import uvicorn

                uvicorn.Server(uvicorn_config(service.app, service.settings)).run(sockets=[sock])
        finally:
            sock.close()
            say("stopping: waiting for the workers to finish the command at hand…")
            if not pool.stop(timeout=settings.visibility_timeout):
                log.warning("a worker is still busy; its command returns to the queue after its visibility timeout")
            service.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        undo_logging()
    say("stopped")
