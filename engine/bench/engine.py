"""`waymark bench engine`: the queue worker's whole path on SQLite beside raw SQLite and pyeventsourcing, at one
synchronous level (FULL, durable, unless WAYMARK_SQLITE_SYNCHRONOUS or --synchronous say otherwise), in one run.

The three workloads (engine/bench/engine_work.py) run in interleaved rounds, each on new files, so a passing
load on the machine falls on all three alike. The figures are the medians of the rounds, the ratios the medians of
each round's ratio (the rounds are paired); the best and every round are printed beside them. Then the load time
of an instance with 10 and with 10,000 events, with no instance cached. Targets are printed beside the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.table import Table

from engine.bench.engine_work import (
    Round,
    Workload,
    cold_load_ms,
    measure_sizes,
    pyeventsourcing_round,
    raw_round,
    waymark_round,
)
from engine.bench.output import console

TARGETS = {"waymark_tps": 8000.0, "waymark_vs_raw_sqlite": 0.5, "waymark_vs_pyeventsourcing": 3.0,
           "load_10000_vs_10": 2.0, "pending_timers_vs_none": 0.9}
EXCLUDED = ("not timed: the API's accept (one synced queue INSERT per command; `waymark bench http`), putting the "
            "commands on the queue, creating the instances; pyeventsourcing has no queue to receive from or delete "
            "from and no outbox to mark. The pending timers are firings on the queue (sent before the triggers, due "
            "in a day) of instances the round does not touch")


def run_engine_bench(*, as_json: bool, instances: int, triggers: int, rounds: int = 3, batch: int = 16,
                     synchronous: str = "full", pending_timers: int = 10_000) -> dict[str, Any]:
    workload = Workload(instances, triggers, batch, synchronous)
    with_timers = replace(workload, pending_timers=pending_timers)
    os.environ.setdefault("EVENTSOURCING_DISABLE_WARNINGS", "1")
    measured: dict[str, list[Round]] = {"waymark": [], "raw_sqlite": [], "pyeventsourcing": []}
    timed: list[Round] = []  # the same Waymark round with `pending_timers` timers waiting on the queue
    with tempfile.TemporaryDirectory(prefix="waymark-bench-") as tmp:
        root = Path(tmp)
        sizes = measure_sizes(_new(root, "sizes"), workload)
        for n in range(rounds):
            # With and without pending timers in turn, first one then the other (a round may slow the next one
            # down, e.g. while the disk writes back what it left).
            if pending_timers and n % 2:
                timed.append(waymark_round(_new(root, f"waymark-timers-{n}"), with_timers))
            waymark = waymark_round(_new(root, f"waymark-{n}"), workload)
            measured["waymark"].append(waymark)
            if pending_timers and not n % 2:
                timed.append(waymark_round(_new(root, f"waymark-timers-{n}"), with_timers))
            measured["raw_sqlite"].append(raw_round(_new(root, f"raw-{n}"), workload, sizes, waymark))
            pyes = pyeventsourcing_round(_new(root, f"pyes-{n}"), workload)
            if pyes is not None:
                measured["pyeventsourcing"].append(pyes)
        load_10 = cold_load_ms(_new(root, "load-10"), 10, synchronous)
        load_10000 = cold_load_ms(_new(root, "load-10000"), 10_000, synchronous)
    levels = {r.synchronous for runs in measured.values() for r in runs}
    if len(levels) != 1:
        raise RuntimeError(f"the workloads ran at different synchronous levels: {sorted(levels)}")
    figures = _figures(measured, workload, levels.pop(), load_10, load_10000)
    _timer_figures(figures, measured["waymark"], timed, pending_timers)
    figures["payload_bytes"] = {"events": sizes.events, "state": sizes.state}
    if as_json:
        print(json.dumps(figures))
    else:
        _print(figures)
    return figures


def _new(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    return path


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _figures(measured: dict[str, list[Round]], workload: Workload, level: str, load_10: float,
             load_10000: float) -> dict[str, Any]:
    tps = {name: [r.tps for r in runs] for name, runs in measured.items()}
    pyes = tps["pyeventsourcing"]
    vs_raw = [w / r for w, r in zip(tps["waymark"], tps["raw_sqlite"], strict=True)]
    vs_pyes = [w / p for w, p in zip(tps["waymark"], pyes, strict=False)]
    # The ceiling of Waymark ÷ pyeventsourcing: Waymark's SQL and syncs alone, with no engine at all.
    raw_vs_pyes = [r / p for r, p in zip(tps["raw_sqlite"], pyes, strict=False)]
    figures: dict[str, Any] = {
        "waymark_tps": _median(tps["waymark"]),
        "raw_sqlite_tps": _median(tps["raw_sqlite"]),
        "pyeventsourcing_tps": _median(pyes),
        "synchronous": level,
        "batch": workload.batch,
        "load_ms_10_cold": round(load_10, 4),
        "load_ms_10000_cold": round(load_10000, 4),
        "waymark_vs_raw_sqlite": round(statistics.median(vs_raw), 3),
        "waymark_vs_pyeventsourcing": round(statistics.median(vs_pyes), 2) if vs_pyes else None,
        "raw_sqlite_vs_pyeventsourcing": round(statistics.median(raw_vs_pyes), 2) if raw_vs_pyes else None,
        "rounds": [{f"{name}_tps": round(runs[n].tps, 1) for name, runs in measured.items() if n < len(runs)}
                   | {"mark_transactions": measured["waymark"][n].mark_transactions,
                      "mark_rides": measured["waymark"][n].mark_rides,
                      "raw_mark_transactions": measured["raw_sqlite"][n].mark_transactions,
                      "raw_mark_rides": measured["raw_sqlite"][n].mark_rides}
                   for n in range(len(measured["waymark"]))],
        "best": {f"{name}_tps": round(max(values), 1) if values else None for name, values in tps.items()},
        "phases_us_per_trigger": {name: _mean_phases(runs) for name, runs in measured.items() if runs
                                  and runs[0].phases_us},
        "instances": workload.instances,
        "triggers_per_instance": workload.triggers,
        "targets": TARGETS,
        "excluded": EXCLUDED,
    }
    figures["met"] = {
        "waymark_tps": figures["waymark_tps"] >= TARGETS["waymark_tps"],
        "waymark_vs_raw_sqlite": figures["waymark_vs_raw_sqlite"] >= TARGETS["waymark_vs_raw_sqlite"],
        "waymark_vs_pyeventsourcing": bool(vs_pyes) and figures["waymark_vs_pyeventsourcing"]
        >= TARGETS["waymark_vs_pyeventsourcing"],
        "load_10000_vs_10": load_10000 <= TARGETS["load_10000_vs_10"] * load_10,
    }
    return figures


def _timer_figures(figures: dict[str, Any], plain: list[Round], timed: list[Round], pending: int) -> None:
    """`waymark_tps` again with `pending` timers waiting on the queue, and the paired ratio to the round without."""
    figures["pending_timers"] = pending
    if not timed:
        figures["waymark_tps_pending_timers"] = figures["pending_timers_vs_none"] = None
        figures["met"]["pending_timers_vs_none"] = True
        return
    ratios = [t.tps / p.tps for t, p in zip(timed, plain, strict=True)]
    figures["waymark_tps_pending_timers"] = _median([r.tps for r in timed])
    figures["pending_timers_vs_none"] = round(statistics.median(ratios), 3)
    figures["best"]["waymark_tps_pending_timers"] = round(max(r.tps for r in timed), 1)
    for row, run in zip(figures["rounds"], timed, strict=True):
        row["waymark_tps_pending_timers"] = round(run.tps, 1)
    figures["met"]["pending_timers_vs_none"] = figures["pending_timers_vs_none"] >= TARGETS["pending_timers_vs_none"]


def _mean_phases(runs: list[Round]) -> dict[str, float]:
    names = list(runs[0].phases_us)
    return {name: round(statistics.fmean(r.phases_us.get(name, 0.0) for r in runs), 1) for name in names}


def _print(figures: dict[str, Any]) -> None:
    rounds = figures["rounds"]
    table = Table("measure", f"median of {len(rounds)}", "best", "rounds", "target", "met",
                  title=f"waymark bench engine: the queue worker's path on SQLite, "
                        f"synchronous={figures['synchronous']}, batches of {figures['batch']}, interleaved rounds")

    def met(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    def each(key: str) -> str:
        return " / ".join(f"{r[key]:,.0f}" for r in rounds if key in r)

    best, ok = figures["best"], figures["met"]
    table.add_row("Waymark triggers/s", f"{figures['waymark_tps']:,.0f}", f"{best['waymark_tps']:,.0f}",
                  each("waymark_tps"), f"≥ {TARGETS['waymark_tps']:,.0f}", met(ok["waymark_tps"]))
    if figures["waymark_tps_pending_timers"] is not None:
        table.add_row(f"  with {figures['pending_timers']:,} timers pending",
                      f"{figures['waymark_tps_pending_timers']:,.0f}", f"{best['waymark_tps_pending_timers']:,.0f}",
                      each("waymark_tps_pending_timers"), "", "")
        table.add_row("  with ÷ without pending timers", f"{figures['pending_timers_vs_none']:.0%}", "", "",
                      f"≥ {TARGETS['pending_timers_vs_none']:.0%}", met(ok["pending_timers_vs_none"]))
    table.add_row("raw SQLite (same SQL)", f"{figures['raw_sqlite_tps']:,.0f}", f"{best['raw_sqlite_tps']:,.0f}",
                  each("raw_sqlite_tps"), "", "")
    table.add_row("  Waymark ÷ raw SQLite", f"{figures['waymark_vs_raw_sqlite']:.0%}", "", "",
                  f"≥ {TARGETS['waymark_vs_raw_sqlite']:.0%}", met(ok["waymark_vs_raw_sqlite"]))
    pyes = figures["pyeventsourcing_tps"]
    table.add_row("pyeventsourcing", f"{pyes:,.0f}" if pyes else "not installed",
                  f"{best['pyeventsourcing_tps']:,.0f}" if pyes else "", each("pyeventsourcing_tps"), "", "")
    ratio = figures["waymark_vs_pyeventsourcing"]
    table.add_row("  Waymark ÷ pyeventsourcing", f"{ratio:.1f}×" if ratio else "n/a", "", "",
                  f"≥ {TARGETS['waymark_vs_pyeventsourcing']:g}×", met(ok["waymark_vs_pyeventsourcing"]))
    ceiling = figures["raw_sqlite_vs_pyeventsourcing"]
    table.add_row("  raw SQLite ÷ pyeventsourcing (its ceiling)", f"{ceiling:.1f}×" if ceiling else "n/a", "", "",
                  "", "")
    table.add_row("load, 10 events, cold", f"{figures['load_ms_10_cold']:.3f} ms", "", "", "", "")
    table.add_row("load, 10,000 events, cold", f"{figures['load_ms_10000_cold']:.3f} ms", "", "",
                  f"≤ {TARGETS['load_10000_vs_10']:g}× the 10-event load", met(ok["load_10000_vs_10"]))
    console.print(table)
    spent = figures["phases_us_per_trigger"]
    phases = Table("µs per trigger", *spent, title="where the time goes (mean of rounds)")
    for name in dict.fromkeys(n for p in spent.values() for n in p):
        phases.add_row(name, *(f"{p[name]:.1f}" if name in p else "-" for p in spent.values()))
    console.print(phases)
    console.print(EXCLUDED, highlight=False, soft_wrap=True)
