"""`waymark bench cosmos --json` (one JSON object, request counts measured at the HTTP layer) and the local server
it and the tests start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli.bench_cosmos import CosmosServerMissing, LocalCosmosServer, run_cosmos_bench


def test_the_bench_prints_one_json_object_within_the_request_budget(capsys: pytest.CaptureFixture[str]) -> None:
    figures = run_cosmos_bench(True, instances=3, rounds=2)
    printed = json.loads(capsys.readouterr().out)
    assert printed == figures
    assert {"requests_per_trigger_cold", "requests_per_trigger_warm", "cosmos_tps", "sqlite_tps"} <= set(printed)
    assert printed["requests_per_trigger_warm"] == 3
    assert printed["requests_per_trigger_cold"] == 4
    assert printed["warm_requests_per_trigger_by_method"] == {"POST": 2, "PATCH": 1}  # query + create, position
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
