"""`waymark bench engine`: Waymark's trigger rate on SQLite beside its baselines, in one run.

(a) Waymark end to end without the queue, as the worker runs a received batch of 16: find each trigger
    (idempotency), load, decide, and store the batch in one group commit.
(b) raw SQLite: one INSERT of a payload of the same size per transaction, same pragmas.
(c) pyeventsourcing's Application on SQLite with an aggregate cache, one event per command.
(d) the load time of one instance with 10 and with 10,000 events.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from engine.cli import render
from engine.domain import Trigger
from engine.runtime import Engine, sqlite_engine
from engine.service.commands import CreateInstance

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"
TENANT = "bench"
BATCH = 16  # the queue worker's receive batch (Worker.batch_size)


def _timed(work: Callable[[], int]) -> float:
    """Operations per second of `work`, which returns how many operations it did."""
    start = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - start)


def _engine(data_dir: Path) -> Engine:
    engine = sqlite_engine(data_dir)
    engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
    return engine


def _create(engine: Engine, instance_id: str) -> None:
    engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", f"create-{instance_id}",
                                           context={"claimant": "Jo Bloggs", "costCentre": "CC-1234",
                                                    "description": "Train to the Leeds office and back"}))


def waymark_tps(data_dir: Path, instances: int, triggers: int) -> tuple[float, int]:
    engine = _engine(data_dir)
    ids = [f"claim-{n:04d}" for n in range(instances)]
    for instance_id in ids:
        _create(engine, instance_id)
    work = [(instance_id, Trigger("update", f"t-{instance_id}-{n}", {"amount": n + 0.5}))
            for n in range(triggers) for instance_id in ids]

    def run() -> int:
        # As the queue worker does it: a received batch of triggers is decided in order and stored in one
        # group commit (each commit still whole or absent on its own).
        for start in range(0, len(work), BATCH):
            for result in engine.processor.trigger_many(TENANT, work[start:start + BATCH]):
                if isinstance(result, Exception):
                    raise result
        return len(work)

    tps = _timed(run)
    commit = engine.events.find_trigger(TENANT, ids[0], work[0][1].id)
    assert commit is not None
    payload = len(json.dumps([e.to_dict() for e in commit.events])) + len(json.dumps(commit.state.to_dict()))
    return tps, payload


def raw_sqlite_tps(data_dir: Path, operations: int, payload_size: int) -> float:
    connection = sqlite3.connect(data_dir / "raw.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, stream TEXT, seq INTEGER, payload TEXT)")
    payload = "x" * payload_size

    def run() -> int:
        for n in range(operations):
            connection.execute("BEGIN")
            connection.execute("INSERT INTO rows (stream, seq, payload) VALUES (?, ?, ?)", (f"s{n % 100}", n, payload))
            connection.execute("COMMIT")
        return operations

    try:
        return _timed(run)
    finally:
        connection.close()


def pyeventsourcing_tps(data_dir: Path, instances: int, triggers: int) -> float | None:
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return None

    class Claim(Aggregate):
        @event("Created")
        def __init__(self, claimant: str) -> None:
            self.claimant = claimant
            self.amount: float | None = None

        @event("Updated")
        def update(self, amount: float) -> None:
            self.amount = amount

    class Claims(Application[Any]):
        def create(self, claimant: str) -> Any:
            claim = Claim(claimant)
            self.save(claim)
            return claim.id

        def update(self, claim_id: Any, amount: float) -> None:
            claim: Claim = self.repository.get(claim_id)
            claim.update(amount)
            self.save(claim)

    application = Claims(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                              "SQLITE_DBNAME": str(data_dir / "pyeventsourcing.db"),
                              "AGGREGATE_CACHE_MAXSIZE": str(instances * 2)})
    ids = [application.create("Jo Bloggs") for _ in range(instances)]
    work = [(claim_id, n + 0.5) for n in range(triggers) for claim_id in ids]

    def run() -> int:
        for claim_id, amount in work:
            application.update(claim_id, amount)
        return len(work)

    try:
        return _timed(run)
    finally:
        application.close()


def load_ms(data_dir: Path, events: int, repeats: int = 200) -> float:
    engine = _engine(data_dir)
    instance_id = f"history-{events}"
    _create(engine, instance_id)
    for n in range(events - 1):
        engine.processor.trigger(TENANT, instance_id, Trigger("update", f"h-{n}", {"amount": n}))
    assert engine.events.load(TENANT, instance_id).version == events
    start = time.perf_counter()
    for _ in range(repeats):
        engine.events.load(TENANT, instance_id)
    return (time.perf_counter() - start) / repeats * 1000


def run_engine_bench(*, as_json: bool, instances: int, triggers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp:
        root = Path(tmp)
        for name in ("waymark", "raw", "pyes", "load10", "load10000"):
            (root / name).mkdir()
        os.environ.setdefault("EVENTSOURCING_DISABLE_WARNINGS", "1")
        waymark, payload = waymark_tps(root / "waymark", instances, triggers)
        raw = raw_sqlite_tps(root / "raw", instances * triggers, payload)
        pyes = pyeventsourcing_tps(root / "pyes", instances, triggers)
        figures: dict[str, Any] = {
            "waymark_tps": round(waymark, 1),
            "raw_sqlite_tps": round(raw, 1),
            "pyeventsourcing_tps": round(pyes, 1) if pyes is not None else None,
            "load_ms_10": round(load_ms(root / "load10", 10), 4),
            "load_ms_10000": round(load_ms(root / "load10000", 10_000), 4),
            "instances": instances,
            "triggers_per_instance": triggers,
            "payload_bytes": payload,
        }
    if as_json:
        print(json.dumps(figures))
        return figures
    table = Table("measure", "figure", "baseline", "target", "met", title="waymark bench engine (SQLite)")
    ratio_pyes = waymark / pyes if pyes else None

    def met(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    table.add_row("Waymark triggers/s", f"{waymark:,.0f}", "-", "≥ 5,000", met(waymark >= 5000))
    table.add_row("  vs pyeventsourcing", f"{ratio_pyes:.1f}×" if ratio_pyes else "n/a",
                  f"{pyes:,.0f}/s" if pyes else "not installed", "≥ 4×", met(bool(ratio_pyes and ratio_pyes >= 4)))
    table.add_row("  vs raw SQLite", f"{waymark / raw:.0%}", f"{raw:,.0f}/s ({payload} B)", "≥ 25%",
                  met(waymark / raw >= 0.25))
    table.add_row("load, 10 events", f"{figures['load_ms_10']:.3f} ms", "-", "-", "")
    table.add_row("load, 10,000 events", f"{figures['load_ms_10000']:.3f} ms", f"{figures['load_ms_10']:.3f} ms",
                  "≤ 2× the 10-event load", met(figures["load_ms_10000"] <= 2 * figures["load_ms_10"]))
    render.console.print(table)
    return figures
