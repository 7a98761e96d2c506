"""`waymark bench cosmos`: every request the Cosmos store sends per trigger on the worker's path, with the outbox and
one webhook subscriber, beside the same path on SQLite, in one run (engine/bench/cosmos_work.py measures).

It starts a local `@vercel/cosmosdb-server` itself (`LocalCosmosServer`, engine/bench/cosmos_server.py) and counts the
HTTP requests the Cosmos client sends (a `RequestCounter` on the SDK's per-request hook: every request on the wire,
retries included), with the request charges the responses carry.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from rich.table import Table

from engine.bench.cosmos_server import LocalCosmosServer
from engine.bench.cosmos_work import cosmos_figures, sqlite_tps
from engine.bench.output import console


def run_cosmos_bench(as_json: bool, *, instances: int = 20, rounds: int = 15, batch: int = 16) -> dict[str, Any]:
    """`waymark bench cosmos [--json]`: starts cosmosdb-server, measures, prints a table (or one JSON object)."""
    from urllib3.exceptions import InsecureRequestWarning

    with warnings.catch_warnings():
        # The local server's certificate is self-signed, and only its connections skip verification.
        warnings.simplefilter("ignore", InsecureRequestWarning)
        with LocalCosmosServer() as server:
            figures = cosmos_figures(server, instances=instances, rounds=rounds, batch=batch)
    figures["sqlite_tps"] = round(sqlite_tps(instances=instances, rounds=rounds, batch=batch), 1)
    if as_json:
        print(json.dumps(figures))
        return figures
    _print(figures)
    return figures


def _print(figures: dict[str, Any]) -> None:
    def met(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    table = Table("measure", "Cosmos (cosmosdb-server)", "SQLite", "target", "met",
                  title="waymark bench cosmos: the worker's path with the outbox and one webhook subscriber")
    total = figures["requests_per_trigger_total"]
    table.add_row("requests per trigger, all on the wire (steady state, sweeper amortised)", f"{total:g}", "-",
                  f"≤ {figures['target_requests_per_trigger_total']:g}", met(figures["met"]))
    table.add_row("  of which by method", ", ".join(f"{k} {v:g}" for k, v in figures["requests_by_method"].items()),
                  "-", "", "")
    table.add_row("  of which the sweeper (per pass, amortised)",
                  f"{figures['sweeper_requests_per_pass']} per pass, {figures['sweeper_requests_per_trigger']:g}",
                  "-", "", "")
    table.add_row("requests per trigger, one command at a time (the Functions host)",
                  f"{figures['requests_per_trigger_single']:g}", "-", "", "")
    table.add_row("requests per trigger, cold (a new process)", f"{figures['requests_per_trigger_cold']:g}", "-", "",
                  "")
    ru = figures["ru_per_trigger"]
    table.add_row("RU per trigger (x-ms-request-charge)", "n/a" if ru is None else f"{ru:g}", "-", "", "")
    table.add_row("triggers/s, delivered and marked", f"{figures['cosmos_tps']:,.0f}", f"{figures['sqlite_tps']:,.0f}",
                  "", "")
    console.print(table)
    console.print(figures["ru_note"], highlight=False, soft_wrap=True)
    console.print(figures["excluded"], highlight=False, soft_wrap=True)
