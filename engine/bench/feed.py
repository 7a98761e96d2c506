"""`waymark bench feed`: how fast the change feed delivers, on the SQLite engine to a real HTTP receiver on loopback.

(a) latency: a commit every 5 ms; from the moment the commit is stored (the processor's `on_commit`) to the
    moment the receiver has read the request: p50 and p95 in ms;
(b) live throughput: triggers appended as fast as the engine goes, each event delivered to one webhook
    subscriber (structured mode, signed); events per second from the first commit to the last receipt — bounded
    by the append rate, which shares the machine with the delivery;
(c) feed throughput (`events_per_s`): a backlog of stored commits handed to the dispatcher at once (as after a
    restart), events per second until the last receipt;
(d) a flaky subscriber (`flaky_subscriber_p50_ms`): 550 commits (50 creations, 500 triggers, one every 5 ms) go
    to two subscribers at once: one that answers 500 to 30 % of requests (one in ten of those after sleeping 2 s)
    and, as the baseline, a healthy one (`flaky_baseline_p50_ms`). From the commit to the event's first successful
    receipt (a failed request is not a receipt): p50, p95 and the last. The sweeper runs as in `waymark serve`
    (30 s grace, every 10 s): a delivery whose every live attempt failed arrives through it.

Each receiver runs in a process of its own (see `_Receiver`).
"""

from __future__ import annotations

import functools
import json
import os
import random
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

from engine.bench.child import end_child
from engine.bench.output import console
from engine.domain import Commit, Trigger
from engine.feed import ChangeFeed, SqliteSubscriptionStore
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import CreateInstance
from engine.service.engine import Engine

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"
TENANT = "bench"
FLAKY_FAIL_RATE = 0.3  # of requests answered 500
FLAKY_SLOW_SHARE = 0.1  # of those failures answered after sleeping 2 s


class _Receiver:
    """A minimal webhook endpoint that notes when (`time.monotonic`) each event id arrived. It runs in a process of
    its own (`python -m engine.bench.feed --receiver`) so that it does not compete with the engine for the
    GIL: what is measured is the engine's delivery, not the receiver's parsing. CLOCK_MONOTONIC is one clock for
    every process of a machine, so arrival times compare with the commit times taken in the engine's process."""

    def __init__(self, *, fail_rate: float = 0.0, slow_share: float = 0.0, slow_seconds: float = 2.0,
                 seed: int = 16) -> None:
        self.arrived: dict[str, float] = {}
        self.order: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        rng = random.Random(seed)
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
                with receiver.lock:
                    fail = rng.random() < fail_rate
                    slow = fail and rng.random() < slow_share
                if fail:  # a flaky receiver: this request is not a receipt
                    if slow:
                        time.sleep(slow_seconds)
                    self._answer(500)
                    return
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


def _serve_receiver(flaky: bool) -> None:
    """The receiver process: prints its port, serves until its stdin closes."""
    receiver = _Receiver(fail_rate=FLAKY_FAIL_RATE, slow_share=FLAKY_SLOW_SHARE) if flaky else _Receiver()
    threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(receiver.port, flush=True)
    sys.stdin.read()


class RemoteReceiver:
    """The engine's side of the receiver process."""

    def __init__(self, *, flaky: bool = False) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "engine.bench.feed", "--receiver"]
                                        + (["--flaky"] if flaky else []),
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
        end_child(self.process)


def _all_arrived(receiver: RemoteReceiver, ids: list[str]) -> bool:
    return all(i in receiver.arrived for i in ids)


def _flaky_run(engine: Engine, feed: ChangeFeed, committed: dict[str, float], instances: int,
               triggers: int) -> dict[str, Any]:
    """(d): the same commits to a flaky and a healthy subscriber at once."""
    steady, flaky = RemoteReceiver(), RemoteReceiver(flaky=True)
    feed.start(sweep_interval=10.0)  # as `waymark serve` runs it: what the live retries give up on comes later
    try:
        for name, receiver in (("steady", steady), ("flaky", flaky)):
            subscription, _ = feed.subscribe(TENANT, name, endpoint=receiver.url, secret="bench-secret-0123456789")
            assert subscription.status == "active", subscription.last_error
        ids: list[str] = []
        for n in range(instances):
            instance_id = f"flaky-{n:04d}"
            commit = engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim",
                                                            f"create-{instance_id}",
                                                            context={"claimant": "Jo Bloggs"})).commit
            ids.append(f"{commit.instance_id}:{commit.last_sequence}")
            time.sleep(0.005)
        for n in range(triggers):
            instance_id = f"flaky-{n % instances:04d}"
            commit = engine.processor.trigger(TENANT, instance_id, Trigger("update", f"fl-{n}", {"amount": n})).commit
            ids.append(f"{commit.instance_id}:{commit.last_sequence}")
            time.sleep(0.005)
        figures: dict[str, Any] = {}
        for name, receiver in (("flaky_subscriber", flaky), ("flaky_baseline", steady)):
            if not receiver.wait_for(functools.partial(_all_arrived, receiver, ids), 300, every=0.05):
                raise RuntimeError(f"the {name} run was not delivered within 300 s")
            latencies = [(receiver.arrived[i] - committed[i]) * 1000 for i in ids]
            quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
            figures |= {f"{name}_p50_ms": round(statistics.median(latencies), 1),
                        f"{name}_p95_ms": round(quantiles[94], 1), f"{name}_last_ms": round(max(latencies), 1)}
        feed.dispatcher.drain(30)
        figures["flaky_events"] = len(ids)
        figures["flaky_receiver"] = (f"{FLAKY_FAIL_RATE:.0%} of requests answered 500, "
                                     f"{FLAKY_SLOW_SHARE:.0%} of those after sleeping 2 s")
        return figures
    finally:
        steady.close()
        flaky.close()


def measure(data_dir: Path, *, latency_samples: int, instances: int, triggers: int, flaky_instances: int = 50,
            flaky_triggers: int = 500) -> dict[str, Any]:
    engine = sqlite_engine(data_dir)
    engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
    receiver = RemoteReceiver()
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
        engine.processor.on_commit = on_commit
        feed.unsubscribe(TENANT, "bench")
        flaky = _flaky_run(engine, feed, committed, flaky_instances, flaky_triggers)
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
            **flaky,
        }
    finally:
        feed.close()
        receiver.close()
        for part in (engine.events, engine.definitions, engine.queue):
            close = getattr(part, "close", None)
            if callable(close):
                close()


def run_feed_bench(as_json: bool, *, latency_samples: int = 300, instances: int = 50,
                   triggers: int = 40, flaky_instances: int = 50, flaky_triggers: int = 500) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="waymark-bench-feed-") as tmp:
        figures = measure(Path(tmp), latency_samples=latency_samples, instances=instances, triggers=triggers,
                          flaky_instances=flaky_instances, flaky_triggers=flaky_triggers)
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
    table.add_row(f"commit → first receipt, flaky subscriber ({figures['flaky_receiver']}), p50 / p95 / last",
                  f"{figures['flaky_subscriber_p50_ms']:,.0f} / {figures['flaky_subscriber_p95_ms']:,.0f} / "
                  f"{figures['flaky_subscriber_last_ms']:,.0f} ms")
    table.add_row("  the same commits to a healthy subscriber meanwhile, p50 / p95 / last",
                  f"{figures['flaky_baseline_p50_ms']:,.0f} / {figures['flaky_baseline_p95_ms']:,.0f} / "
                  f"{figures['flaky_baseline_last_ms']:,.0f} ms")
    console.print(table)
    return figures


if __name__ == "__main__":  # pragma: no cover - the receiver process of the benchmark
    if sys.argv[1:2] == ["--receiver"]:
        _serve_receiver(flaky="--flaky" in sys.argv[2:])
