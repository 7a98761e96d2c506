"""`waymark bench isolation`: one tenant's latency alone, and beside a hostile tenant, through `waymark serve`.

Rounds (3 by default) of two runs, each against a fresh `waymark serve` process on a fresh data directory (same
settings: SQLite, 2 workers, private destinations allowed because the tarpits are on loopback), interleaved so
that a passing load on the machine falls on both alike:

- **alone**: tenant B creates 200 instances of the expense claim and sends 1,000 `update` triggers (5 per
  instance), 16 requests in flight, each with `Prefer: wait=30`, so a latency is the whole way (accepted, queued,
  processed, answered);
- **with a hostile neighbour**: the same work for B while tenant A, in the same server, keeps creating (10 a second)
  instances of the worst definitions it can write — expressions built to be as costly as possible (`hostile_*`
  below: the comment trick that hid a macro from the old regex check, nested comprehensions, string and list
  growth), an `http` action to a tarpit that answers one byte a second, with the longest timeout and most retries a
  definition may ask for — and sends every one of its events to a webhook subscription on another tarpit.

Figures: `p99_ms_alone` and `p99_ms_with_hostile_neighbour` (with p50 and max) over B's 1,000 triggers; how A's
instances stood a minute after B finished (status and error types: A's commands go through its one worker slot,
and an `http` action to the tarpit holds it up to the outbound deadlines, so many are still queued then), the
definitions refused at upload, and what the tarpits saw. B's creations are not in the percentiles (they are timed
the same way, and reported). The tarpits run in a process of their own, the load in this one.

`NoisyNeighbour` is the scenario; tests/integration/test_noisy_neighbour.py runs it and checks its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from engine.bench.child import end_child
from engine.bench.http import free_port, server
from engine.bench.output import console

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"
VICTIM, HOSTILE = "tenant-b", "tenant-a"
WAIT = {"Prefer": "wait=30"}

# The worst expressions: each is the value of a `set-context` entry action of the initial state, over a context
# the hostile tenant sends (`hostile_context`: lists of 1,000 and 250 numbers, a string of 2 KiB). Comprehensions
# nest 3 deep at most here: 4 are refused at upload.
HOSTILE_EXPRESSIONS = {
    # the comment trick: a `//` comment between a macro's name and its `(` hid the macro from a regex; n^3
    "comment-trick": "context.items.map//x\n(a, context.items.map//y\n(b, context.items.map(c, a + b + c)))",
    # nested comprehensions of every kind, n^3
    "nested-macros": "context.items.map(a, context.items.filter(b, context.items.exists(c, a * b * c == -1)))",
    # string growth: a million copies of an 8 KiB string
    "string-growth": "context.items.map(a, context.items.map(b, context.text + context.text + context.text + "
                     "context.text))",
    # list growth: a million copies of the list
    "list-growth": "context.items.map(a, context.items.map(b, context.items))",
    # as costly as the step budget lets an evaluation be (250^3 steps): it may run, up to its time bound
    "under-the-budget": "context.small.map(a, context.small.map(b, context.small.map(c, a + b + c)))",
}


def hostile_context(items: int) -> dict[str, Any]:
    return {"items": list(range(items)), "small": list(range(min(items, 250))), "text": "x" * 2048}


def hostile_definitions(action_url: str) -> list[dict[str, Any]]:
    """A's workflows: one per expression, and one whose creation calls the action tarpit."""
    definitions = [{"id": f"bomb-{name}", "initialState": "start",
                    "states": {"start": {"entryActions": [{"type": "set-context", "values": {"out": expression}}],
                                         "transitions": [{"id": "end", "trigger": "end", "target": "done"}]},
                               "done": {}}}
                   for name, expression in HOSTILE_EXPRESSIONS.items()]
    definitions.append({"id": "tarpit-call", "initialState": "calling",
                        "states": {"calling": {"entryActions": [{"type": "http", "url": action_url,
                                                                 "timeoutSeconds": 300, "retries": 10,
                                                                 "backoffSeconds": 60}],
                                               "transitions": [{"id": "end", "trigger": "end", "target": "done"}]},
                                   "done": {}}})
    return definitions


# ---------------------------------------------------------------------------------------------- the tarpits

@dataclass
class _TarpitStats:
    requests: Counter[str] = field(default_factory=Counter)
    open: int = 0
    most_open: int = 0


async def _tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: _TarpitStats) -> None:
    """Consent to a webhook handshake (OPTIONS) at once; answer anything else 200 with a body of a million bytes,
    sent one byte a second. `GET /stats` says what it has seen."""
    stats.open += 1
    stats.most_open = max(stats.most_open, stats.open)
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request, *lines = head.split("\r\n")
            method, path = request.split(" ")[:2]
            headers = {name.strip().lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in lines if line)}
            await reader.readexactly(int(headers.get("content-length") or 0))
            if method == "OPTIONS":
                origin = headers.get("webhook-request-origin", "*").encode("latin-1")
                writer.write(b"HTTP/1.1 200 OK\r\nWebHook-Allowed-Origin: " + origin + b"\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            if path == "/stats":
                body = json.dumps({"requests": dict(stats.requests), "mostOpen": stats.most_open,
                                   "open": stats.open}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                continue
            stats.requests[path] += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            await writer.drain()
            while True:
                await asyncio.sleep(1.0)
                writer.write(b" ")
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            asyncio.CancelledError):  # a client gone, or the process stopping
        pass
    finally:
        stats.open -= 1
        writer.close()


async def _serve_tarpit() -> None:
    stats = _TarpitStats()
    tarpit = await asyncio.start_server(lambda r, w: _tarpit(r, w, stats), "127.0.0.1", 0)
    print(tarpit.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    tarpit.close()


class Tarpits:
    """The tarpit process: `url(path)` drips; `stats()` is what it saw."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "engine.bench.isolation", "--tarpit"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url("/stats"), timeout=10).json()
        return result

    def close(self) -> None:
        end_child(self.process)


# ---------------------------------------------------------------------------------------------- the scenario

@dataclass
class VictimRun:
    trigger_ms: list[float]
    create_ms: list[float]
    outcomes: Counter[str]  # of the triggers: applied, ignored, … or the HTTP status when not 200


@dataclass
class NoisyNeighbour:
    """The scenario against one running server (`url`)."""

    url: str
    admin_key: str = ADMIN_KEY
    instances: int = 200
    triggers: int = 1000
    concurrency: int = 16
    hostile_rate: float = 10.0  # A's creations a second
    hostile_items: int = 1000  # the length of the list A's expressions go over
    hostile_ids: list[str] = field(default_factory=list)
    hostile_workflows: list[str] = field(default_factory=list)  # A's definitions the server accepted
    refused: dict[str, str] = field(default_factory=dict)  # A's definitions refused at upload, and why

    def onboard(self, tenant: str) -> str:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            created = http.post("/tenants", json={"id": tenant}, headers={"Authorization": f"Bearer {self.admin_key}"})
            created.raise_for_status()
            key: str = created.json()["key"]
        return key

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def prepare_victim(self) -> str:
        key = self.onboard(VICTIM)
        with self.client(key) as http:
            http.put(f"/tenants/{VICTIM}/workflows/expense-claim", content=SAMPLE.read_bytes(),
                     headers={"Content-Type": "application/json"}).raise_for_status()
        return key

    def prepare_hostile(self, tarpits: Tarpits) -> str:
        key = self.onboard(HOSTILE)
        with self.client(key) as http:
            for definition in hostile_definitions(tarpits.url("/action")):
                stored = http.put(f"/tenants/{HOSTILE}/workflows/{definition['id']}", json=definition)
                if stored.status_code == 422:  # a defence too: the definition never runs
                    problem = stored.json()
                    listed = [f"{e.get('path')}: {e.get('message')}" for e in problem.get("errors") or []]
                    self.refused[definition["id"]] = "; ".join(listed) or problem["detail"]
                    continue
                stored.raise_for_status()
                self.hostile_workflows.append(definition["id"])
            subscribed = http.put(f"/tenants/{HOSTILE}/subscriptions/tarpit", json={"endpoint": tarpits.url("/hook")})
            subscribed.raise_for_status()
            if subscribed.json()["status"] != "active":
                raise RuntimeError(f"the webhook tarpit was not subscribed: {subscribed.text}")
        return key

    @contextlib.contextmanager
    def hostile_load(self, key: str) -> Iterator[None]:
        """A creates hostile instances, `hostile_rate` a second, for as long as the block runs."""
        stop = threading.Event()
        workflows = self.hostile_workflows

        def load() -> None:
            with self.client(key) as http:
                n = 0
                while not stop.wait(1.0 / self.hostile_rate):
                    workflow = workflows[n % len(workflows)]
                    instance_id = f"{workflow}-{n}"
                    context = hostile_context(self.hostile_items) if workflow.startswith("bomb-") else {}
                    response = http.post(f"/tenants/{HOSTILE}/instances",
                                         json={"workflowId": workflow, "id": instance_id, "context": context})
                    if response.status_code == 202:
                        self.hostile_ids.append(instance_id)
                    n += 1

        thread = threading.Thread(target=load, name="hostile-tenant", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(30)

    def run_victim(self, key: str) -> VictimRun:
        """B's work: its instances, then its triggers, `concurrency` requests in flight, each waited for."""
        ids = [f"claim-{n:04d}" for n in range(self.instances)]
        local = threading.local()

        def http() -> httpx.Client:
            if not hasattr(local, "client"):
                local.client = self.client(key)
            client: httpx.Client = local.client
            return client

        def create(instance_id: str) -> float:
            start = time.perf_counter()
            response = http().post(f"/tenants/{VICTIM}/instances", headers=WAIT, json={
                "workflowId": "expense-claim", "id": instance_id, "context": {"claimant": "Jo Bloggs"}})
            if response.status_code != 201:
                raise RuntimeError(f"creating {instance_id} answered {response.status_code}: {response.text}")
            return (time.perf_counter() - start) * 1000

        def trigger(n: int) -> tuple[float, str]:
            instance_id = ids[n % len(ids)]
            start = time.perf_counter()
            response = http().post(f"/tenants/{VICTIM}/instances/{instance_id}/triggers", headers=WAIT,
                                   json={"id": f"u-{n}", "topic": "update", "content": {"amount": n}})
            elapsed = (time.perf_counter() - start) * 1000
            outcome = response.json().get("outcome") if response.status_code == 200 else str(response.status_code)
            return elapsed, str(outcome)

        clients: list[httpx.Client] = []
        with ThreadPoolExecutor(self.concurrency, initializer=lambda: clients.append(http())) as pool:
            create_ms = list(pool.map(create, ids))
            timed = list(pool.map(trigger, range(self.triggers)))
        for client in clients:
            client.close()
        return VictimRun([ms for ms, _ in timed], create_ms, Counter(outcome for _, outcome in timed))

    def hostile_outcomes(self, key: str, *, settle_seconds: float) -> dict[str, dict[str, Any]]:
        """A's instances as they ended, by id: `status`, and for a fault its `errorType`, `where` and `message`
        (`status` "not created" while its creation is still queued). Waits up to `settle_seconds` for every one to
        fault."""
        deadline = time.monotonic() + settle_seconds
        outcomes: dict[str, dict[str, Any]] = {}
        with self.client(key) as http:
            while True:
                for instance_id in self.hostile_ids:
                    if outcomes.get(instance_id, {}).get("status") == "Faulted":
                        continue
                    response = http.get(f"/tenants/{HOSTILE}/instances/{instance_id}")
                    if response.status_code != 200:
                        outcomes[instance_id] = {"status": "not created"}
                        continue
                    body = response.json()
                    outcomes[instance_id] = {"status": body["status"], **{
                        name: (body.get("fault") or {}).get(name) for name in ("errorType", "where", "message")}}
                if all(o["status"] == "Faulted" for o in outcomes.values()) or time.monotonic() > deadline:
                    return outcomes
                time.sleep(1.0)


# ---------------------------------------------------------------------------------------------- the benchmark

def serve_command(data_dir: str, port: int) -> list[str]:
    return [sys.executable, "-m", "engine.cli.main", "serve", "--data-dir", data_dir, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2"]


def serve_env(**settings: str) -> dict[str, str]:
    env = {**os.environ, "WAYMARK_ADMIN_KEY": ADMIN_KEY, "WAYMARK_LOAD_SAMPLES": "false",
           "WAYMARK_LOG_LEVEL": "error", "WAYMARK_ALLOW_PRIVATE_DESTINATIONS": "true",
           # B's load is far under these; they are not what is measured
           "WAYMARK_RATE_LIMIT_PER_KEY": "1000000", "WAYMARK_RATE_LIMIT_BURST_PER_KEY": "1000000", **settings}
    env.pop("WAYMARK_DATA_DIR", None)
    return env


@contextlib.contextmanager
def running_server(**settings: str) -> Iterator[str]:
    """A `waymark serve` process on a fresh data directory, with these WAYMARK_* settings beside the bench's."""
    with tempfile.TemporaryDirectory(prefix="waymark-bench-isolation-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with server(serve_command(tmp, port), serve_env(**settings), f"{url}/healthz"):
            yield url


def _percentiles(values: list[float]) -> dict[str, float]:
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(statistics.median(values), 1), "p99": round(quantiles[98], 1), "max": round(max(values), 1)}


@dataclass
class _Hostile:
    scenario: NoisyNeighbour
    run: VictimRun
    outcomes: Counter[str]
    tarpits: dict[str, Any]


def _alone(instances: int, triggers: int, concurrency: int) -> VictimRun:
    with running_server() as url:
        scenario = NoisyNeighbour(url, instances=instances, triggers=triggers, concurrency=concurrency)
        return scenario.run_victim(scenario.prepare_victim())


def _beside_hostile(tarpits: Tarpits, instances: int, triggers: int, concurrency: int, hostile_items: int,
                    settle_seconds: float) -> _Hostile:
    with running_server() as url:
        scenario = NoisyNeighbour(url, instances=instances, triggers=triggers, concurrency=concurrency,
                                  hostile_items=hostile_items)
        victim_key, hostile_key = scenario.prepare_victim(), scenario.prepare_hostile(tarpits)
        with scenario.hostile_load(hostile_key):
            time.sleep(2.0)  # A is at it before B starts
            run = scenario.run_victim(victim_key)
        ended = scenario.hostile_outcomes(hostile_key, settle_seconds=settle_seconds)
        outcomes = Counter(f"{o['status']}: {o['errorType']}" if o["status"] == "Faulted" else o["status"]
                           for o in ended.values())
        return _Hostile(scenario, run, outcomes, tarpits.stats())


def run_isolation_bench(*, instances: int = 200, triggers: int = 1000, concurrency: int = 16, rounds: int = 3,
                        settle_seconds: float = 60.0, hostile_items: int = 1000) -> dict[str, Any]:
    """`rounds` rounds, each a run alone then a run beside A (a fresh server each), so that a passing load on the
    machine falls on both alike; the percentiles are over every round's triggers, and each round's p99 is listed.
    A's outcomes are those of the last round, `settle_seconds` after B finished."""
    alone: list[VictimRun] = []
    beside: list[_Hostile] = []
    tarpits = Tarpits()
    try:
        for number in range(rounds):
            alone.append(_alone(instances, triggers, concurrency))
            beside.append(_beside_hostile(tarpits, instances, triggers, concurrency, hostile_items,
                                          settle_seconds if number == rounds - 1 else 0.0))
    finally:
        tarpits.close()
    solo = _percentiles([ms for run in alone for ms in run.trigger_ms])
    noisy = _percentiles([ms for run in beside for ms in run.run.trigger_ms])
    last = beside[-1]
    return {
        "p99_ms_alone": solo["p99"], "p99_ms_with_hostile_neighbour": noisy["p99"],
        "p50_ms_alone": solo["p50"], "p50_ms_with_hostile_neighbour": noisy["p50"],
        "max_ms_alone": solo["max"], "max_ms_with_hostile_neighbour": noisy["max"],
        "rounds": [{"p99_ms_alone": _percentiles(a.trigger_ms)["p99"],
                    "p99_ms_with_hostile_neighbour": _percentiles(b.run.trigger_ms)["p99"]}
                   for a, b in zip(alone, beside, strict=True)],
        "create_p99_ms_alone": _percentiles([ms for run in alone for ms in run.create_ms])["p99"],
        "create_p99_ms_with_hostile_neighbour": _percentiles([ms for b in beside for ms in b.run.create_ms])["p99"],
        "victim_outcomes_alone": dict(sum((run.outcomes for run in alone), Counter())),
        "victim_outcomes_with_hostile_neighbour": dict(sum((b.run.outcomes for b in beside), Counter())),
        "hostile_instances": len(last.scenario.hostile_ids), "hostile_outcomes": dict(last.outcomes),
        "hostile_refused_at_upload": last.scenario.refused,
        "tarpit_requests": last.tarpits["requests"], "tarpit_most_open_connections": last.tarpits["mostOpen"],
        "instances": instances, "triggers": triggers, "concurrency": concurrency, "workers": 2,
        "cpus": os.cpu_count(),
    }


def print_figures(figures: dict[str, Any]) -> None:
    """B's percentiles alone and beside A, each round's p99, and what A and the tarpits saw."""
    table = Table("tenant B's triggers (Prefer: wait)", "alone", "beside hostile tenant A",
                  title="waymark bench isolation (waymark serve, SQLite, 2 workers)")
    for name in ("p50", "p99", "max"):
        table.add_row(f"{name} (ms)", f"{figures[f'{name}_ms_alone']:,.1f}",
                      f"{figures[f'{name}_ms_with_hostile_neighbour']:,.1f}")
    table.add_row("p99 of each round (ms)", ", ".join(f"{r['p99_ms_alone']:,.0f}" for r in figures["rounds"]),
                  ", ".join(f"{r['p99_ms_with_hostile_neighbour']:,.0f}" for r in figures["rounds"]))
    table.add_row("outcomes", json.dumps(figures["victim_outcomes_alone"]),
                  json.dumps(figures["victim_outcomes_with_hostile_neighbour"]))
    console.print(table)
    console.print(f"tenant A: {figures['hostile_instances']} instances, "
                  f"{json.dumps(figures['hostile_outcomes'])}; tarpits: "
                  f"{json.dumps(figures['tarpit_requests'])} requests, at most "
                  f"{figures['tarpit_most_open_connections']} connections open", highlight=False)


if __name__ == "__main__":  # pragma: no cover - the tarpit process
    if sys.argv[1:] == ["--tarpit"]:
        asyncio.run(_serve_tarpit())
