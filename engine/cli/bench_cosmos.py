"""`waymark bench cosmos`: requests per trigger and triggers/s of the Cosmos store, beside SQLite, in one run.

It starts a local `@vercel/cosmosdb-server` itself (`LocalCosmosServer`, which the tests use too), counts the HTTP
requests the Cosmos client sends (a `RequestCounter` on the SDK's per-request hook: every request on the wire,
retries included) and runs triggers through `CommandProcessor.trigger` (find_trigger + load + decide + append):

- `requests_per_trigger_cold`: the first trigger on an instance, with a store that has never seen it (a fresh
  process; container metadata already read);
- `requests_per_trigger_warm`: the steady state, a trigger on an instance this process appended to before;
- `cosmos_tps` / `sqlite_tps`: sequential triggers per second on the same workload against cosmosdb-server and
  against the embedded SQLite store. cosmosdb-server is an in-memory Node.js server on loopback, so its figure
  is the client-side cost of the Cosmos path (SDK, TLS, JSON) more than anything a real account would do.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.table import Table

from engine.cli import render
from engine.domain import Trigger
from engine.runtime import Engine, sqlite_engine
from engine.service.commands import CreateInstance

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "expense-claim.json"
TENANT = "bench"
HOST = "127.0.0.1"
# The well-known key of the Cosmos DB emulator: cosmosdb-server accepts any key, the SDK needs one in base64.
LOCAL_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

# Keep-alive on (the CLI's server closes every connection: a TLS handshake per request), loopback only, the port
# chosen by the OS on the first start (0) and kept across restarts; "LISTENING <port>" once ready.
_LAUNCHER = r"""
const { createHttpsServer } = require(process.argv[1]);
const server = createHttpsServer({ keepAlive: true });
server.keepAliveTimeout = 60000;
server.on("error", (err) => { console.error("ERROR " + err.message); process.exit(3); });
server.listen(parseInt(process.argv[2], 10), process.argv[3], () => {
  console.log("LISTENING " + server.address().port);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
"""


class CosmosServerMissing(RuntimeError):
    """node or node_modules/@vercel/cosmosdb-server is not installed."""


class LocalCosmosServer:
    """`@vercel/cosmosdb-server` (from npm) on a free loopback port, over HTTPS with its self-signed certificate.

    Its data is in memory: `stop()` then `start()` gives an empty account on the same port (clients keep their
    endpoint). Use `connection_verify=False` (`verify=False`) with it, and only with it.
    """

    def __init__(self, *, root: Path = ROOT, start_timeout: float = 30.0) -> None:
        self.package = root / "node_modules" / "@vercel" / "cosmosdb-server"
        node = shutil.which("node")
        if node is None or not (self.package / "package.json").exists():
            raise CosmosServerMissing(
                f"{self.package} (or node) is missing: the Cosmos tests and `waymark bench cosmos` need "
                "@vercel/cosmosdb-server from npm. Run `make test` (it runs `npm ci` from package-lock.json), "
                "or `npm ci` at the repository root.")
        self.node = node
        self.start_timeout = start_timeout
        self.port = 0
        self.key = LOCAL_KEY
        self._process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="waymark-cosmosdb-server-"))
        _started.add(self)

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("the server has not been started")
        return f"https://{HOST}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalCosmosServer:
        if self.running:
            return self
        log = self._log_dir / f"server-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as output:
            self._process = subprocess.Popen(
                [self.node, "-e", _LAUNCHER, str(self.package), str(self.port), HOST],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("LISTENING "):
                    self.port = int(line.split()[1])
                    return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"cosmosdb-server did not start (port {self.port or 'any'}): "
                           f"{log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Stop the server (its process only): new connections are refused, open ones are reset."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> LocalCosmosServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def client(self, **options: Any) -> Any:
        """A client of this server (TLS not verified: the certificate is self-signed)."""
        from engine.stores.cosmos import cosmos_client

        return cosmos_client(self.endpoint, key=self.key, verify=False, **options)


# Servers run in sessions of their own, so a Ctrl-C does not reach them: what was not stopped is stopped at exit.
_started: weakref.WeakSet[LocalCosmosServer] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_started):
        server.close()


# ---------------------------------------------------------------------------------------------- the bench

def _processor(events: Any, definitions: Any) -> Engine:
    from engine.queues.memory import MemoryCommandQueue

    return Engine(events=events, definitions=definitions, queue=MemoryCommandQueue())


def _create(engine: Engine, instance_id: str) -> None:
    engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", f"create-{instance_id}",
                                           context={"claimant": "Jo Bloggs", "costCentre": "CC-1234",
                                                    "description": "Train to the Leeds office and back"}))


def _triggers(engine: Engine, ids: list[str], round_: int) -> int:
    for instance_id in ids:
        engine.processor.trigger(TENANT, instance_id, Trigger("update", f"t-{instance_id}-{round_}",
                                                              {"amount": round_ + 0.5}))
    return len(ids)


def _tps(engine: Engine, ids: list[str], rounds: range) -> float:
    start = time.perf_counter()
    count = sum(_triggers(engine, ids, round_) for round_ in rounds)
    return count / (time.perf_counter() - start)


def cosmos_figures(server: LocalCosmosServer, *, instances: int, rounds: int) -> dict[str, Any]:
    """Requests per trigger (cold, warm, fresh client) and triggers/s against `server`."""
    from engine.stores.cosmos import CosmosDefinitionStore, CosmosEventStore, CosmosLocation, RequestCounter

    counter = RequestCounter()
    client = server.client(request_hook=counter)
    database = f"bench-{uuid.uuid4().hex[:8]}"

    def location(tenant: str) -> CosmosLocation:
        return CosmosLocation(f"{database}-{tenant}")

    definitions = CosmosDefinitionStore(client, resolve=location, auto_create=True)
    engine = _processor(CosmosEventStore(client, resolve=location, auto_create=True), definitions)
    engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
    ids = [f"claim-{n:04d}" for n in range(instances)]
    for instance_id in ids:
        _create(engine, instance_id)

    # Cold: a store that has never seen these instances (a new process's), on a client whose container metadata
    # is read already, and a catalog that has parsed the workflow: only what a first trigger itself costs.
    cold = _processor(CosmosEventStore(client, resolve=location), definitions)
    cold.catalog.get(TENANT, "expense-claim", 1)
    cold.events.ping(TENANT)  # the store's one-time check of the tenant's container
    counter.reset()
    _triggers(cold, ids, 0)
    requests_cold = counter.reset() / len(ids)

    # Warm: the steady state, triggers on instances this store has appended to.
    counter.reset()
    for round_ in range(1, 4):
        _triggers(cold, ids, round_)
    by_method_warm = {method: round(count / (3 * len(ids)), 2) for method, count in counter.by_method.items()}
    requests_warm = counter.reset() / (3 * len(ids))

    # A brand-new client and engine (a new process): the account read, the container metadata, the definition.
    fresh_counter = RequestCounter()
    fresh_client = server.client(request_hook=fresh_counter)
    fresh = _processor(CosmosEventStore(fresh_client, resolve=location),
                       CosmosDefinitionStore(fresh_client, resolve=location))
    fresh_counter.reset()
    _triggers(fresh, ids[:1], 4)
    requests_fresh = fresh_counter.reset()

    counter.reset()
    tps = _tps(cold, ids, range(5, 5 + rounds))
    total_requests = counter.reset()
    return {
        "requests_per_trigger_cold": round(requests_cold, 2),
        "requests_per_trigger_warm": round(requests_warm, 2),
        "requests_first_trigger_fresh_client": requests_fresh,
        "cosmos_tps": round(tps, 1),
        "cosmos_requests_per_trigger_in_tps_run": round(total_requests / (rounds * len(ids)), 2),
        "warm_requests_per_trigger_by_method": by_method_warm,
    }


def sqlite_tps(*, instances: int, rounds: int) -> float:
    with tempfile.TemporaryDirectory(prefix="waymark-bench-cosmos-") as tmp:
        engine = sqlite_engine(Path(tmp))
        try:
            engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
            ids = [f"claim-{n:04d}" for n in range(instances)]
            for instance_id in ids:
                _create(engine, instance_id)
            _triggers(engine, ids, 0)
            return _tps(engine, ids, range(1, 1 + rounds))
        finally:
            for part in (engine.events, engine.definitions, engine.queue):
                closer = getattr(part, "close", None)
                if callable(closer):
                    closer()


def run_cosmos_bench(as_json: bool, *, instances: int = 20, rounds: int = 15) -> dict[str, Any]:
    """`waymark bench cosmos [--json]`: starts cosmosdb-server, measures, prints a table (or one JSON object)."""
    from urllib3.exceptions import InsecureRequestWarning

    with warnings.catch_warnings():
        # The local server's certificate is self-signed, and only its connections skip verification.
        warnings.simplefilter("ignore", InsecureRequestWarning)
        with LocalCosmosServer() as server:
            figures = cosmos_figures(server, instances=instances, rounds=rounds)
    figures["sqlite_tps"] = round(sqlite_tps(instances=instances, rounds=rounds), 1)
    figures["instances"] = instances
    figures["triggers_timed"] = instances * rounds
    if as_json:
        print(json.dumps(figures))
        return figures

    def met(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    table = Table("measure", "Cosmos (cosmosdb-server)", "SQLite", "target", "met",
                  title="waymark bench cosmos: CommandProcessor.trigger (find_trigger + load + decide + append)")
    table.add_row("requests per trigger, warm", f"{figures['requests_per_trigger_warm']:g}", "-", "≤ 3",
                  met(figures["requests_per_trigger_warm"] <= 3))
    table.add_row("requests per trigger, cold", f"{figures['requests_per_trigger_cold']:g}", "-", "-", "")
    table.add_row("requests, first trigger of a new client", f"{figures['requests_first_trigger_fresh_client']}",
                  "-", "-", "")
    table.add_row("triggers/s (sequential)", f"{figures['cosmos_tps']:,.0f}", f"{figures['sqlite_tps']:,.0f}",
                  "-", "")
    render.console.print(table)
    return figures
