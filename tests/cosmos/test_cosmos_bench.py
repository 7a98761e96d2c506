"""`waymark bench cosmos --json` (one JSON object, request counts measured at the HTTP layer) and the local server
it and the tests start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.bench.cosmos import run_cosmos_bench
from engine.bench.cosmos_server import CosmosServerMissing, LocalCosmosServer


def test_the_bench_prints_one_json_object_within_the_request_budget(capsys: pytest.CaptureFixture[str]) -> None:
    figures = run_cosmos_bench(True, instances=4, rounds=4, batch=8)
    printed = json.loads(capsys.readouterr().out)
    assert printed == figures
    assert {"requests_per_trigger_total", "requests_per_trigger_single", "requests_per_trigger_cold",
            "ru_per_trigger", "cosmos_tps", "sqlite_tps"} <= set(printed)
    # The steady state reads nothing: one create per trigger, the batch's positions, index writes and outbox marks.
    assert printed["requests_by_method"]["POST"] == 1
    assert "POST query" not in printed["requests_by_method"]
    assert 1 < printed["requests_by_method"]["PATCH"] + 1 <= printed["requests_per_trigger_total"] <= 3
    assert printed["met"] is True and printed["target_requests_per_trigger_total"] == 3
    assert printed["sweeper_requests_per_pass"] >= 2  # its compaction read and the queries of its pass
    assert printed["requests_per_trigger_single"] >= 2  # a position and a create each, and the marks
    assert printed["requests_per_trigger_cold"] == 4
    # cosmosdb-server sends a request charge of 1 on every response, and the bench says so.
    assert printed["ru_per_trigger"] is not None and "x-ms-request-charge: 1" in printed["ru_note"]
    assert printed["cosmos_tps"] > 0 and printed["sqlite_tps"] > 0


def test_a_missing_cosmosdb_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CosmosServerMissing, match="npm ci"):
        LocalCosmosServer(root=tmp_path)


def test_the_server_stops_and_starts_on_the_same_port() -> None:
    with LocalCosmosServer() as server:
        endpoint = server.endpoint
        server.stop()
        assert not server.running
        server.start()
        assert server.running and server.endpoint == endpoint
        server.client().create_database_if_not_exists("after-restart")
