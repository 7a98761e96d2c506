"""`waymark bench http`: requests/s of accepting a trigger over HTTP beside an empty FastAPI endpoint.

Two servers, one after the other, each in its own process under the same uvicorn settings (`uvicorn_config`):

- the real app (`waymark serve`) on a temporary data directory with the demo tenant, the samples and a few
  expense claims, driven with `POST /tenants/demo/instances/{i}/triggers` without `Prefer: wait` (202: the key
  checked, the instance found, the command queued);
- an app with one endpoint, `POST /empty`, that answers 202 and does nothing.

The same client drives both: httpx.AsyncClient, `concurrency` requests in flight on keep-alive connections,
for `seconds` (after a short warm-up) or `max_requests`, whichever comes first; same body, same headers.
With `--workers 0` (the default) the real server only accepts, as the API does on Azure, where the queue
is drained by other invocations; `--workers N` runs N queue workers in the server process as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.table import Table

from engine.bench.output import console

if TYPE_CHECKING:
    from fastapi import FastAPI

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
DEMO_KEY = "bench-demo-key-0123456789abcdef"
TENANT = "demo"
WARM_UP_SECONDS = 0.5
ROUNDS = 4
BODY = {"topic": "update", "content": {"amount": 12.5}}


def empty_app() -> FastAPI:
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post("/empty", status_code=202)
    async def empty() -> Response:
        return Response(status_code=202)

    return app


def serve_empty(port: int) -> None:
    """Run the empty app on 127.0.0.1:`port` under the same uvicorn settings as `waymark serve`."""
    import uvicorn

    from engine.hosting.local import bind, uvicorn_config
    from engine.hosting.settings import Settings

    sock = bind("127.0.0.1", port)
    uvicorn.Server(uvicorn_config(empty_app(), Settings())).run(sockets=[sock])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(data_dir: Path, instances: int) -> list[str]:
    """The demo tenant with the samples, and `instances` expense claims, written before the server starts."""
    from engine.hosting.local import open_service
    from engine.hosting.settings import Settings
    from engine.service.commands import CreateInstance

    service = open_service(Settings(data_dir=data_dir, admin_key=ADMIN_KEY, demo_key=DEMO_KEY, load_samples=True))
    ids = [f"claim-{n:03d}" for n in range(instances)]
    try:
        for instance_id in ids:
            service.engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", f"c-{instance_id}",
                                                           context={"claimant": "Jo Bloggs"}))
    finally:
        service.close()
    return ids


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], ready_url: str, method: str = "GET") -> Iterator[None]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: "
                                   f"{process.stderr.read().decode(errors='replace') if process.stderr else ''}")
            try:
                if httpx.request(method, ready_url, timeout=1.0).status_code < 300:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server at {ready_url} did not start")
            time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@dataclass
class Run:
    requests: int
    seconds: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def drive(base_url: str, paths: list[str], *, seconds: float, concurrency: int, max_requests: int,
                headers: dict[str, str]) -> Run:
    """`concurrency` loops, each posting BODY to the next path as soon as its previous answer came back."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    body = json.dumps(BODY).encode()
    headers = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, headers=headers, timeout=30.0) as client:
        async def loop(until: float, budget: list[int], counts: list[int]) -> None:
            while time.perf_counter() < until and budget[0] > 0:
                budget[0] -= 1
                path = paths[budget[0] % len(paths)]
                response = await client.post(path, content=body)
                counts[0 if response.status_code == 202 else 1] += 1

        counts = [0, 0]
        budget = [max_requests]
        start = time.perf_counter()
        await asyncio.gather(*(loop(start + seconds, budget, counts) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Run(counts[0], elapsed, counts[1])


async def drive_raw(base_url: str, paths: list[str], *, seconds: float, concurrency: int, max_requests: int,
                    headers: dict[str, str]) -> Run:
    """As `drive`, with a minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx's AsyncClient costs more per request than uvicorn does to answer an empty endpoint (here it tops out
    at a few hundred requests/s, and fewer the more connections it holds), so with it the figures measure
    the client. This client writes a prepared request and reads the status line, headers and
    `Content-Length` bytes of the answer: the server is what is measured.
    """
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    body = json.dumps(BODY).encode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in {**headers, "Content-Type": "application/json"}.items())
    prepared = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
                 ).encode() + body for path in paths]

    async def loop(until: float, budget: list[int], counts: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < until and budget[0] > 0:
                budget[0] -= 1
                writer.write(prepared[budget[0] % len(prepared)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                counts[0 if head[9:12] == b"202" else 1] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    counts = [0, 0]
    budget = [max_requests]
    start = time.perf_counter()
    await asyncio.gather(*(loop(start + seconds, budget, counts) for _ in range(concurrency)))
    return Run(counts[0], time.perf_counter() - start, counts[1])


def run_http_bench(*, seconds: float, concurrency: int, max_requests: int, instances: int, workers: int,
                   client: str = "raw") -> dict[str, Any]:
    """Both servers run at once; the client drives one at a time, alternating in ROUNDS short rounds, so a
    passing load on the machine falls on both measurements alike."""
    driver = drive_raw if client == "raw" else drive
    # The key's rate limit is checked on every request (its cost is in the figure) but set far above what one
    # process serves, so it never refuses one: the bench measures the cost of accepting, not the limit.
    env = {**os.environ, "WAYMARK_ADMIN_KEY": ADMIN_KEY, "WAYMARK_DEMO_KEY": DEMO_KEY, "WAYMARK_LOG_LEVEL": "warning",
           "WAYMARK_RATE_LIMIT_PER_KEY": "1000000", "WAYMARK_RATE_LIMIT_BURST_PER_KEY": "1000000"}
    env.pop("WAYMARK_DATA_DIR", None)
    auth = {"Authorization": f"Bearer {DEMO_KEY}"}
    with tempfile.TemporaryDirectory(prefix="waymark-bench-http-") as tmp, contextlib.ExitStack() as servers:
        ids = prepare(Path(tmp), instances)
        real_url = f"http://127.0.0.1:{free_port()}"
        servers.enter_context(server(
            [sys.executable, "-m", "engine.cli.main", "serve", "--data-dir", tmp, "--host", "127.0.0.1",
             "--port", str(httpx.URL(real_url).port), "--workers", str(workers)], env, f"{real_url}/healthz"))
        empty_port = free_port()
        empty_url = f"http://127.0.0.1:{empty_port}"
        servers.enter_context(server(
            [sys.executable, "-c", f"from engine.bench.http import serve_empty; serve_empty({empty_port})"],
            env, f"{empty_url}/empty", method="POST"))
        targets = {"trigger": (real_url, [f"/tenants/{TENANT}/instances/{i}/triggers" for i in ids]),
                   "empty": (empty_url, ["/empty"])}
        totals = {name: Run(0, 0.0, 0) for name in targets}
        for url, paths in targets.values():  # warm-up, not counted
            asyncio.run(driver(url, paths, seconds=WARM_UP_SECONDS, concurrency=concurrency, max_requests=max_requests,
                               headers=auth))
        for _ in range(ROUNDS):
            for name, (url, paths) in targets.items():
                left = max_requests - totals[name].requests
                if left > 0:
                    run = asyncio.run(driver(url, paths, seconds=seconds / ROUNDS, concurrency=concurrency,
                                             max_requests=left, headers=auth))
                    totals[name] = Run(totals[name].requests + run.requests, totals[name].seconds + run.seconds,
                                       totals[name].errors + run.errors)
    trigger, empty = totals["trigger"], totals["empty"]
    return {
        "trigger_rps": round(trigger.rps, 1),
        "empty_rps": round(empty.rps, 1),
        "ratio": round(trigger.rps / empty.rps, 3) if empty.rps else None,
        "trigger_requests": trigger.requests,
        "empty_requests": empty.requests,
        "errors": trigger.errors + empty.errors,
        "concurrency": concurrency,
        "seconds": seconds,
        "workers": workers,
        "client": client,
        "cpus": os.cpu_count(),
    }


def print_figures(figures: dict[str, Any]) -> None:
    """The figures as a table, with the settings they were measured under."""
    ratio = figures["ratio"] or 0.0
    table = Table("measure", "requests/s", "requests", "target", "met", title="waymark bench http")
    table.add_row("POST …/instances/{i}/triggers (202)", f"{figures['trigger_rps']:,.0f}",
                  str(figures["trigger_requests"]), "≥ 50% of empty", "[green]yes[/]" if ratio >= 0.5 else "[red]no[/]")
    table.add_row("POST /empty (202, FastAPI)", f"{figures['empty_rps']:,.0f}", str(figures["empty_requests"]), "-",
                  "")
    table.add_row("ratio", f"{ratio:.0%}", "", "", "")
    console.print(table)
    console.print(f"{figures['concurrency']} requests in flight for {figures['seconds']:g} s per server, "
                  f"{figures['workers']} queue worker(s), {figures['errors']} error(s), {figures['client']} client, "
                  f"{figures['cpus']} CPU(s)", highlight=False)
