"""`waymark serve`: the API under uvicorn and the queue workers in one process, on a local data directory (the local
host, engine/hosting/local.py, builds them).

Shutdown (SIGINT, SIGTERM): uvicorn stops accepting and lets in-flight requests finish (up to
`shutdown_timeout`), then the workers are stopped: each finishes the command at hand and hands back the rest of
its batch to the queue. A command is deleted from the queue only after its commit is stored, so nothing
accepted is lost, whatever moment the signal comes.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from engine.cli import render
from engine.domain.errors import WaymarkError
from engine.hosting.local import DEMO_TENANT, Service, bind, configure_logging, open_service, url_of, uvicorn_config
from engine.hosting.worker import WorkerPool

if TYPE_CHECKING:
    from engine.hosting.settings import Settings

log = logging.getLogger("waymark.serve")

DASHBOARD = "/ui"  # engine.ui.MOUNT, not imported: `waymark --help` must not load the web stack


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
    from engine.hosting.settings import Settings

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
