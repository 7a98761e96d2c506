"""`waymark bench …`: the commands; the benchmarks themselves are in engine/bench.

Each command reads its options, runs its benchmark and prints its figures (a table, or one JSON object with
`--json`). The benchmark modules are imported when a command runs, so that `waymark --help` stays fast.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from engine.cli import render
from engine.cli.help import Cli

bench_app = Cli(help="Benchmarks that print figures beside their baselines.")
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@bench_app.command("engine")
def bench_engine(as_json: AsJson = False,
                 instances: Annotated[int, typer.Option(min=1, help="Instances.")] = 100,
                 triggers: Annotated[int, typer.Option(min=1, help="Triggers per instance.")] = 100,
                 rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds; the median is reported.")] = 3,
                 batch: Annotated[int, typer.Option(min=1, help="Commands per received batch.")] = 16,
                 synchronous: Annotated[str | None, typer.Option(
                     help="SQLite synchronous level of all three: full or normal [env WAYMARK_SQLITE_SYNCHRONOUS; "
                          "default full].")] = None,
                 pending_timers: Annotated[int, typer.Option(
                     min=0, help="Waymark also runs each round with this many timers pending on the queue (0: "
                                 "not).")] = 10_000,
                 ) -> None:
    """The queue worker's whole path on SQLite beside raw SQLite (the same SQL) and pyeventsourcing, at the same
    synchronous level; cold load time by history length."""
    from engine.bench.engine import run_engine_bench
    from engine.hosting.settings import Settings

    level = synchronous or Settings().sqlite_synchronous
    if level not in ("full", "normal"):
        raise typer.BadParameter(f"must be full or normal, not {level!r}", param_hint="--synchronous")
    run_engine_bench(as_json=as_json, instances=instances, triggers=triggers, rounds=rounds, batch=batch,
                     synchronous=level, pending_timers=pending_timers)


@bench_app.command("cosmos")
def bench_cosmos(as_json: AsJson = False,
                 instances: Annotated[int, typer.Option(min=1, help="Instances.")] = 20,
                 rounds: Annotated[int, typer.Option(min=1, help="Timed triggers per instance.")] = 15,
                 batch: Annotated[int, typer.Option(min=1, help="Commands per received batch.")] = 16) -> None:
    """Every request to Cosmos per trigger on the worker's path, with the outbox and one subscriber, on a local
    cosmosdb-server (sweeper passes amortised); triggers/s beside SQLite."""
    from engine.bench.cosmos import run_cosmos_bench
    from engine.bench.cosmos_server import CosmosServerMissing

    try:
        run_cosmos_bench(as_json, instances=instances, rounds=rounds, batch=batch)
    except CosmosServerMissing as e:
        render.console.print(str(e), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from e


@bench_app.command("feed")
def bench_feed(as_json: AsJson = False) -> None:
    """p50/p95 ms from commit to webhook receipt on loopback, and events/s to one subscriber."""
    from engine.bench.feed import run_feed_bench

    run_feed_bench(as_json)


@bench_app.command("http")
def bench_http(
    as_json: AsJson = False,
    seconds: Annotated[float, typer.Option(min=0.5, max=60, help="Measured seconds per server.")] = 4.0,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 32,
    max_requests: Annotated[int, typer.Option(min=100, help="At most this many requests per server.")] = 50_000,
    instances: Annotated[int, typer.Option(min=1, help="Instances the triggers go to.")] = 50,
    workers: Annotated[int, typer.Option(min=0, max=16, help="Queue workers in the real server.")] = 0,
    client: Annotated[str, typer.Option(help="raw (asyncio streams, cheap) or httpx (AsyncClient).")] = "raw",
) -> None:
    """Triggers accepted per second over HTTP (no Prefer: wait) beside an empty FastAPI endpoint."""
    from engine.bench.http import print_figures, run_http_bench

    if client not in ("raw", "httpx"):
        raise typer.BadParameter("raw or httpx", param_hint="--client")
    figures = run_http_bench(seconds=seconds, concurrency=concurrency, max_requests=max_requests,
                             instances=instances, workers=workers, client=client)
    if as_json:
        print(json.dumps(figures))
    else:
        print_figures(figures)


@bench_app.command("isolation")
def bench_isolation(
    as_json: AsJson = False,
    instances: Annotated[int, typer.Option(min=1, help="Tenant B's instances.")] = 200,
    triggers: Annotated[int, typer.Option(min=100, help="Tenant B's triggers.")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, max=128, help="Tenant B's requests in flight.")] = 16,
    rounds: Annotated[int, typer.Option(min=1, max=20, help="Rounds of (alone, beside A), interleaved.")] = 3,
    settle_seconds: Annotated[float, typer.Option(min=0, help="How long A's instances may take to end after B "
                                                              "(last round).")] = 60.0,
    hostile_items: Annotated[int, typer.Option(min=1, help="Length of the list A's expressions go over.")] = 1000,
) -> None:
    """Tenant B's trigger latency alone and beside a hostile tenant A (costly expressions, an `http` action to a
    tarpit, a webhook to a tarpit), each run through its own `waymark serve`."""
    from engine.bench.isolation import print_figures, run_isolation_bench

    figures = run_isolation_bench(instances=instances, triggers=triggers, concurrency=concurrency, rounds=rounds,
                                  settle_seconds=settle_seconds, hostile_items=hostile_items)
    if as_json:
        print(json.dumps(figures))
    else:
        print_figures(figures)
