"""`waymark bench engine --json` runs end to end (small numbers) and prints the figures the README quotes.
Nothing here asserts a speed: the figures only have to be there and be consistent with each other."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from engine.cli.main import app


def test_bench_engine_prints_the_best_and_the_median_of_interleaved_rounds() -> None:
    result = CliRunner().invoke(app, ["bench", "engine", "--json", "--instances", "4", "--triggers", "3",
                                      "--rounds", "2"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["instances"], figures["triggers_per_instance"], figures["rounds"]) == (4, 3, 2)
    assert figures["payload_bytes"] > 0
    for key in ("waymark_tps", "raw_sqlite_tps", "pyeventsourcing_tps"):
        rounds = figures["each_round"][key]
        assert len(rounds) == 2 and all(value > 0 for value in rounds)
        assert figures[key] == max(rounds)
        assert min(rounds) <= figures["median"][key] <= max(rounds)
    assert figures["load_ms_10"] > 0 and figures["load_ms_10000"] > 0
