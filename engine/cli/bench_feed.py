"""`waymark bench feed`: how fast the change feed delivers, on the SQLite engine to a real HTTP receiver on loopback.

(a) latency: a commit every 5 ms; from the moment the commit is stored (the processor's `on_commit`) to the
    moment the receiver has read the request: p50 and p95 in ms;
(b) live throughput: triggers appended as fast as the engine goes, each event delivered to one webhook
    subscriber (structured mode, signed); events per second from the first commit to the last receipt — bounded
    by the append rate, which shares the machine with the delivery;
(c) feed throughput (`events_per_s`): a backlog of stored commits handed to the dispatcher at once (as after a
    restart), events per second until the last receipt.

The receiver runs in a process of its own (see `_Receiver`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from engine.cli import render
from engine.domain import Commit, Trigger
from engine.feed import ChangeFeed, SqliteSubscriptionStore
from engine.runtime import sqlite_engine
from engine.service.commands import CreateInstance

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"
TENANT = "bench"


class _Receiver:
    """A minimal webhook endpoint that notes when (`time.monotonic`) each event id arrived. It runs in a process of
    its own (`python -m engine.cli.bench_feed --receiver`) so that it does not compete with the engine for the
    GIL: what is measured is the engine's delivery, not the receiver's parsing. CLOCK_MONOTONIC is one clock for
    every process of a machine, so arrival times compare with the commit times taken in the engine's process."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.order: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:
                self._answer(200, WebHook_Allowed_Origin=self.headers.get("WebHook-Request-Origin", "*"))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.monotonic()
                event_id = json.loads(body)["id"]
                with receiver.lock:
                    if event_id not in receiver.arrived:
                        receiver.arrived[event_id] = at
                        receiver.order.append((event_id, at))
                self._answer(204)

            def do_GET(self) -> None:  # /arrivals?since=N: what arrived since the N-th event, in arrival order
                since = int(self.path.partition("since=")[2] or 0)
                with receiver.lock:
                    page = receiver.order[since:]
                self._answer(200, json.dumps(page).encode(), Content_Type="application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]


def _serve_receiver() -> None:
    """The receiver process: prints its port, serves until its stdin closes."""
    receiver = _Receiver()
    threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(receiver.port, flush=True)
    sys.stdin.read()


class _RemoteReceiver:
    """The engine's side of the receiver process."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "engine.cli.bench_feed", "--receiver"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{port}/events"
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self.arrived: dict[str, float] = {}

    def poll(self) -> None:
        for event_id, at in self.http.get(f"/arrivals?since={len(self.arrived)}").json():
            self.arrived[event_id] = at

    def wait_for(self, ready: Callable[[], bool], timeout: float, every: float = 0.002) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if ready():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(every)

    def close(self) -> None:
        self.http.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def measure(data_dir: Path, *, latency_samples: int, instances: int, triggers: int) -> dict[str, Any]:
    engine = sqlite_engine(data_dir)
    engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
    receiver = _RemoteReceiver()
    feed = ChangeFeed(engine.events, SqliteSubscriptionStore(data_dir), definitions=engine.catalog,
                      tenants=lambda: [TENANT], allow_private_destinations=True)
    committed: dict[str, float] = {}

    def on_commit(tenant: str, commit: Commit) -> None:
        at = time.monotonic()
        for event in commit.events:
            committed[f"{event.instance_id}:{event.sequence}"] = at
        feed.on_commit(tenant, commit)

    engine.processor.on_commit = on_commit
    try:
        subscription, _ = feed.subscribe(TENANT, "bench", endpoint=receiver.url, secret="bench-secret-0123456789")
        assert subscription.status == "active", subscription.last_error
        ids = [f"claim-{n:04d}" for n in range(instances)]
        for instance_id in ids:
            engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", f"create-{instance_id}",
                                                   context={"claimant": "Jo Bloggs"}))
        receiver.wait_for(lambda: len(receiver.arrived) >= instances, 30, every=0.02)

        # (a) latency: one commit every 5 ms (a light load), arrivals collected afterwards so that asking the
        # receiver does not compete with the deliveries being measured.
        sampled = []
        for n in range(latency_samples):
            commit = engine.processor.trigger(TENANT, ids[n % instances],
                                              Trigger("update", f"lat-{n}", {"amount": n})).commit
            sampled.append(f"{commit.instance_id}:{commit.last_sequence}")
            time.sleep(0.005)
        if not receiver.wait_for(lambda: all(i in receiver.arrived for i in sampled), 30, every=0.02):
            raise RuntimeError("the latency run was not delivered within 30 s")
        latencies = [(receiver.arrived[i] - committed[i]) * 1000 for i in sampled]

        # (b) live: the engine appends as fast as it goes while the feed delivers.
        wanted = len(receiver.arrived) + instances * triggers
        start = time.monotonic()
        for n in range(triggers):
            for instance_id in ids:
                engine.processor.trigger(TENANT, instance_id, Trigger("update", f"tp-{instance_id}-{n}",
                                                                      {"amount": n}))
        appended = time.monotonic() - start
        if not receiver.wait_for(lambda: len(receiver.arrived) >= wanted, 120, every=0.02):
            raise RuntimeError("the live run was not delivered within 120 s")
        live = max(receiver.arrived.values()) - start
        feed.dispatcher.drain(30)

        # (c) backlog: commits stored while the feed was not running (as after a restart), then handed to the
        # dispatcher at once: the feed's own delivery rate, without the engine competing for the CPU.
        engine.processor.on_commit = None
        for n in range(triggers):
            for instance_id in ids:
                engine.processor.trigger(TENANT, instance_id, Trigger("update", f"bl-{instance_id}-{n}",
                                                                      {"amount": n}))
        backlog = engine.events.undispatched(TENANT, limit=instances * triggers)
        wanted = len(receiver.arrived) + sum(len(c.events) for c in backlog)
        start = time.monotonic()
        for commit in backlog:
            feed.dispatcher.submit(TENANT, commit)
        if not receiver.wait_for(lambda: len(receiver.arrived) >= wanted, 120, every=0.02):
            raise RuntimeError("the backlog was not delivered within 120 s")
        delivered = max(receiver.arrived.values()) - start
        feed.dispatcher.drain(30)
        quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
        return {
            "publish_p50_ms": round(statistics.median(latencies), 3),
            "publish_p95_ms": round(quantiles[94], 3),
            "events_per_s": round(len(backlog) / delivered, 1),
            "live_events_per_s": round(instances * triggers / live, 1),
            "live_commits_per_s_appended": round(instances * triggers / appended, 1),
            "latency_samples": latency_samples,
            "events_delivered": instances * triggers,
            "undispatched_after": len(engine.events.undispatched(TENANT, limit=10_000)),
            "mode": "structured, signed, one subscriber",
        }
    finally:
        feed.close()
        receiver.close()
        for part in (engine.events, engine.definitions, engine.queue):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def run_feed_bench(as_json: bool, *, latency_samples: int = 300, instances: int = 50,
                   triggers: int = 40) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="waymark-bench-feed-") as tmp:
        figures = measure(Path(tmp), latency_samples=latency_samples, instances=instances, triggers=triggers)
    if as_json:
        print(json.dumps(figures))
        return figures
    table = Table("measure", "figure", title="waymark bench feed (SQLite engine → webhook on loopback)")
    table.add_row("commit → webhook receipt, p50", f"{figures['publish_p50_ms']:.2f} ms")
    table.add_row("commit → webhook receipt, p95", f"{figures['publish_p95_ms']:.2f} ms")
    table.add_row("events/s to one subscriber (a backlog)", f"{figures['events_per_s']:,.0f}")
    table.add_row("events/s to one subscriber (live)", f"{figures['live_events_per_s']:,.0f}")
    table.add_row("  commits/s the engine appended meanwhile", f"{figures['live_commits_per_s_appended']:,.0f}")
    table.add_row("events per throughput run", f"{figures['events_delivered']:,}")
    render.console.print(table)
    return figures


if __name__ == "__main__":  # pragma: no cover - the receiver process of the benchmark
    if sys.argv[1:] == ["--receiver"]:
        _serve_receiver()
