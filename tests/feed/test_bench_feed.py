"""`waymark bench feed --json` runs end to end (small numbers) and prints the figures docs/benchmarks.md quotes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.bench.feed import run_feed_bench

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The figures the benchmarks page quotes by name.
QUOTED = ("publish_p50_ms", "publish_p95_ms", "events_per_s", "live_events_per_s", "flaky_subscriber_p50_ms",
          "flaky_baseline_p50_ms")


def test_bench_feed_prints_its_figures_as_json(capsys: Any) -> None:
    figures = run_feed_bench(True, latency_samples=20, instances=5, triggers=4, flaky_instances=5, flaky_triggers=20)
    printed = json.loads(capsys.readouterr().out)
    assert printed == figures
    for key in QUOTED:
        assert isinstance(figures[key], float) and figures[key] > 0
    assert figures["publish_p50_ms"] <= figures["publish_p95_ms"]
    assert figures["undispatched_after"] == 0
    assert figures["flaky_events"] == 25


def test_the_benchmarks_page_quotes_the_feed_figures() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert [key for key in QUOTED if f"`{key}`" not in page] == []
