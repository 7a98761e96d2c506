"""`waymark bench engine`: Waymark's trigger rate on SQLite beside its baselines, in one run.

(a) Waymark end to end without the queue, as the worker runs a received batch of 16: find each trigger
    (idempotency), load, decide, and store the batch in one group commit.
(b) raw SQLite: one INSERT of a payload of the same size per transaction, same pragmas.
(c) pyeventsourcing's Application on SQLite with an aggregate cache, one event per command.
(d) the load time of one instance with 10 and with 10,000 events.

(a), (b) and (c) run in interleaved rounds, each on new files, and the best round of each is reported (the
least disturbed by other work on the machine, as `timeit` advises), with the median beside it.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import statistics
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


@functools.cache
def _pyeventsourcing_application() -> type[Any] | None:
    """pyeventsourcing's aggregate and application, defined once per process (it registers each class by name)."""
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

    return Claims


def pyeventsourcing_tps(data_dir: Path, instances: int, triggers: int) -> float | None:
    Claims = _pyeventsourcing_application()
    if Claims is None:
        return None
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


def run_engine_bench(*, as_json: bool, instances: int, triggers: int, rounds: int = 3) -> dict[str, Any]:
    measured: dict[str, list[float]] = {"waymark_tps": [], "raw_sqlite_tps": [], "pyeventsourcing_tps": []}
    os.environ.setdefault("EVENTSOURCING_DISABLE_WARNINGS", "1")
    payload = 0
    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp:
        root = Path(tmp)
        for n in range(rounds):
            for name in ("waymark", "raw", "pyes"):
                (root / f"{name}-{n}").mkdir()
            tps, payload = waymark_tps(root / f"waymark-{n}", instances, triggers)
            measured["waymark_tps"].append(tps)
            measured["raw_sqlite_tps"].append(raw_sqlite_tps(root / f"raw-{n}", instances * triggers, payload))
            baseline = pyeventsourcing_tps(root / f"pyes-{n}", instances, triggers)
            if baseline is not None:
                measured["pyeventsourcing_tps"].append(baseline)
        for name in ("load10", "load10000"):
            (root / name).mkdir()
        load_10, load_10000 = load_ms(root / "load10", 10), load_ms(root / "load10000", 10_000)
    best = {key: max(values) if values else None for key, values in measured.items()}
    median = {key: statistics.median(values) if values else None for key, values in measured.items()}
    waymark, raw, pyes = best["waymark_tps"], best["raw_sqlite_tps"], best["pyeventsourcing_tps"]
    assert waymark is not None and raw is not None
    figures: dict[str, Any] = {
        **{key: round(value, 1) if value is not None else None for key, value in best.items()},
        "load_ms_10": round(load_10, 4),
        "load_ms_10000": round(load_10000, 4),
        "instances": instances,
        "triggers_per_instance": triggers,
        "payload_bytes": payload,
        "rounds": rounds,
        "median": {key: round(value, 1) if value is not None else None for key, value in median.items()},
        "each_round": {key: [round(value, 1) for value in values] for key, values in measured.items()},
    }
    if as_json:
        print(json.dumps(figures))
        return figures
    table = Table("measure", f"best of {rounds}", "median", "baseline (best)", "target", "met",
                  title=f"waymark bench engine (SQLite, {rounds} interleaved rounds)")
    median_waymark, median_raw, median_pyes = (median["waymark_tps"], median["raw_sqlite_tps"],
                                               median["pyeventsourcing_tps"])
    assert median_waymark is not None and median_raw is not None

    def met(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    table.add_row("Waymark triggers/s", f"{waymark:,.0f}", f"{median_waymark:,.0f}", "-", "≥ 5,000",
                  met(waymark >= 5000))
    table.add_row("  vs pyeventsourcing", f"{waymark / pyes:.1f}×" if pyes else "n/a",
                  f"{median_waymark / median_pyes:.1f}×" if median_pyes else "n/a",
                  f"{pyes:,.0f}/s" if pyes else "not installed", "≥ 4×", met(bool(pyes and waymark / pyes >= 4)))
    table.add_row("  vs raw SQLite", f"{waymark / raw:.0%}", f"{median_waymark / median_raw:.0%}",
                  f"{raw:,.0f}/s ({payload} B)", "≥ 25%", met(waymark / raw >= 0.25))
    table.add_row("load, 10 events", f"{load_10:.3f} ms", "", "-", "-", "")
    table.add_row("load, 10,000 events", f"{load_10000:.3f} ms", "", f"{load_10:.3f} ms", "≤ 2× the 10-event load",
                  met(load_10000 <= 2 * load_10))
    render.console.print(table)
    return figures
