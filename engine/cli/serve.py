"""`waymark serve`: the API under uvicorn and the queue workers in one process, on a local data directory.

The pieces are reusable by tests and benchmarks: `open_service` builds the engine, the tenant registry and
the app from settings (first start included), `WorkerPool` runs the queue workers, `bind` and
`uvicorn_config` make the listening socket and the server configuration every host here uses.

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
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from engine.cli import render

if TYPE_CHECKING:  # imported when used, so that `waymark --help` and the remote commands start fast
    import uvicorn
    from fastapi import FastAPI

    from engine.feed import ChangeFeed
    from engine.runtime import Engine
    from engine.settings import Settings
    from engine.tenants import SqliteTenantRegistry, TenantRegistry

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
        for part in (self.engine.events, self.engine.definitions, self.engine.queue, self.tenants):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def open_service(settings: Settings) -> Service:
    """The engine, registry and app of a data directory; on first start, the demo tenant and its samples."""
    from engine.api import create_app
    from engine.api.feed_routes import feed_router
    from engine.runtime import sqlite_engine
    from engine.tenants import SqliteTenantRegistry, new_key, read_or_create_secret

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = settings.secret or read_or_create_secret(data_dir / "secret")[0]
    admin_key, source = settings.admin_key, "environment"
    if admin_key is None:
        admin_key, generated = read_or_create_secret(data_dir / "admin-key", factory=lambda: new_key("wma_"))
        source = "generated" if generated else "file"
    settings = settings.model_copy(update={"admin_key": admin_key})
    engine = sqlite_engine(data_dir, max_dequeue_count=settings.max_dequeue_count)
    tenants = SqliteTenantRegistry(data_dir / "tenants.db", secret=secret)
    first_start = bootstrap(engine, tenants, settings)
    feed = open_feed(engine, tenants, settings)
    app = create_app(engine, tenants, settings, routers=[feed_router(feed)])
    return Service(settings, engine, tenants, app, source, first_start, feed)


def open_feed(engine: Engine, tenants: TenantRegistry, settings: Settings) -> ChangeFeed:
    """The change feed of a local engine: subscriptions under `{data_dir}/feed/`, wired as the engine's outbox."""
    from engine.feed import ChangeFeed, SqliteSubscriptionStore, parse_static_subscriptions

    feed = ChangeFeed(engine.events, SqliteSubscriptionStore(settings.data_dir), definitions=engine.catalog,
                      static=parse_static_subscriptions(settings.feed_subscriptions),
                      tenant_config=lambda tenant: tenants.get(tenant).config,
                      tenants=lambda: [record.id for record in tenants.list()],
                      origin=settings.feed_origin, allow_private_destinations=settings.allow_private_destinations,
                      grace_seconds=settings.feed_grace_seconds, pause_after=settings.feed_pause_after)
    engine.processor.on_commit = feed.on_commit
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
    record, key = tenants.create(DEMO_TENANT, key=settings.demo_key)
    engine.events.ping(record.id)
    loaded = []
    for path in sorted(SAMPLES.glob("*.json")):
        try:
            definition = engine.catalog.put(record.id, load_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, InvalidDefinition) as e:
            log.warning("sample %s was not loaded: %s", path.name, e)
            continue
        loaded.append(definition.id)
    return FirstStart(None if settings.demo_key else key, loaded)


def _has_tenant(tenants: TenantRegistry, tenant: str) -> bool:
    return any(record.id == tenant for record in tenants.list())


class WorkerPool:
    """N queue worker threads sharing one engine; `stop` lets each finish the command at hand."""

    def __init__(self, engine: Engine, count: int, *, visibility_timeout: float = 30.0) -> None:
        self.engine = engine
        self.count = count
        self.visibility_timeout = visibility_timeout
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        from engine.service.worker import Worker

        for number in range(self.count):
            worker = Worker(self.engine.queue, self.engine.processor, visibility_timeout=self.visibility_timeout)
            thread = threading.Thread(target=worker.run, args=(self.stop_event,), name=f"waymark-worker-{number}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

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
                          timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout), server_header=False)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("waymark")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def say(text: str) -> None:
    """One line for people: no wrapping (keys and the export line must copy whole), no auto-highlighting."""
    render.console.print(text, highlight=False, soft_wrap=True)


def banner(service: Service, url: str) -> None:
    settings = service.settings
    say(f"[bold green]Waymark[/] serving on [bold]{url}[/] (data in {settings.data_dir.resolve()}, "
        f"{settings.workers} worker(s)); OpenAPI at {url}/docs")
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
) -> None:
    """Serve the HTTP API with in-process queue workers on a local data directory (SQLite)."""
    from engine.settings import Settings

    flags: dict[str, Any] = {"data_dir": data_dir, "host": host, "port": port, "workers": workers,
                             "log_level": log_level}
    try:
        settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as e:
        for error in e.errors():
            say(f"[red]setting {'.'.join(str(p) for p in error['loc'])}: {error['msg']}[/]")
        raise typer.Exit(2) from e
    run(settings)


def run(settings: Settings) -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    # uvicorn captures SIGINT/SIGTERM while it runs and raises them again once it has stopped: these handlers
    # receive them then, so a Ctrl-C ends in a clean exit 0 instead of a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    configure_logging(settings.log_level)
    try:
        try:
            sock = bind(settings.host, settings.port)
        except OSError as e:
            say(f"[red]cannot listen on {settings.host}:{settings.port}: {e}[/]")
            raise typer.Exit(2) from e
        service = open_service(settings)
        pool = WorkerPool(service.engine, settings.workers, visibility_timeout=settings.visibility_timeout)
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
    say("stopped")
