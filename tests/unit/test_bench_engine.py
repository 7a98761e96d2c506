"""`waymark bench engine --json` runs end to end (small numbers) and prints the figures docs/benchmarks.md quotes.
Nothing here asserts a speed: the figures only have to be there and be consistent with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app

ROOT = Path(__file__).resolve().parents[2]

KEYS = ("waymark_tps", "raw_sqlite_tps", "pyeventsourcing_tps", "synchronous", "batch", "load_ms_10_cold",
        "load_ms_10000_cold", "rounds")
# The figures the benchmarks page quotes by name.
QUOTED = ("waymark_tps", "raw_sqlite_tps", "pyeventsourcing_tps", "raw_sqlite_vs_pyeventsourcing", "load_ms_10_cold",
          "load_ms_10000_cold", "waymark_tps_pending_timers", "pending_timers_vs_none", "phases_us_per_trigger")


@pytest.mark.parametrize("level", ["full", "normal"])
def test_bench_engine_prints_medians_of_interleaved_rounds_at_one_synchronous_level(level: str) -> None:
    result = CliRunner().invoke(app, ["bench", "engine", "--json", "--instances", "8", "--triggers", "3",
                                      "--rounds", "2", "--batch", "4", "--synchronous", level,
                                      "--pending-timers", "300"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(KEYS) <= set(figures) and set(QUOTED) <= set(figures)
    assert (figures["synchronous"], figures["batch"], figures["instances"], figures["triggers_per_instance"]) == (
        level, 4, 8, 3)  # the level read back from the connections of all three
    assert len(figures["rounds"]) == 2
    for key in ("waymark_tps", "raw_sqlite_tps", "pyeventsourcing_tps"):
        each = [r[key] for r in figures["rounds"]]
        assert all(value > 0 for value in each)
        assert min(each) <= figures[key] <= max(each) == figures["best"][key]
    assert all(r["mark_transactions"] + r["mark_rides"] >= 1 for r in figures["rounds"])  # Waymark's, which raw makes
    assert figures["pending_timers"] == 300  # each Waymark round again, with 300 timers pending on the queue
    each = [r["waymark_tps_pending_timers"] for r in figures["rounds"]]
    assert all(value > 0 for value in each)
    assert min(each) <= figures["waymark_tps_pending_timers"] <= max(each)
    assert figures["pending_timers_vs_none"] > 0
    assert figures["load_ms_10_cold"] > 0 and figures["load_ms_10000_cold"] > 0
    assert set(figures["met"]) == set(figures["targets"])
    assert {"receive", "group commit (1 transaction)", "complete (1 transaction)"} <= set(
        figures["phases_us_per_trigger"]["waymark"]) & set(figures["phases_us_per_trigger"]["raw_sqlite"])
    assert figures["payload_bytes"]["events"] > 0 and figures["payload_bytes"]["state"] > 0


def test_bench_engine_refuses_an_unknown_synchronous_level() -> None:
    result = CliRunner().invoke(app, ["bench", "engine", "--synchronous", "off"])
    assert result.exit_code == 2
    assert "full or normal" in result.output


def test_the_benchmarks_page_quotes_the_engine_figures() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert [key for key in QUOTED if f"`{key}`" not in page] == []
