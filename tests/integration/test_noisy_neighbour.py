"""A hostile tenant beside an ordinary one, through `waymark serve` (a real process, SQLite, 2 workers): tenant A
uploads the worst definitions it can write (engine/bench/isolation.py: costly expressions, an `http` action to a
tarpit that drips one byte a second, a webhook to another tarpit) and keeps creating instances of them, while tenant
B creates 200 instances and sends 1,000 triggers. Every one of B's triggers applies; A's instances fault with
messages that say what was exceeded; the tarpits really were called. (`waymark bench isolation` runs the same
scenario and reports B's latency beside a run without A; no time is asserted here.)"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
from pathlib import Path

import pytest

from engine.bench.isolation import HOSTILE_EXPRESSIONS, NoisyNeighbour, Tarpits, running_server
from engine.cli.bench import bench_isolation
from engine.domain import HttpRequest
from engine.hosting.local import open_engine, open_tenants
from engine.hosting.settings import Settings

pytestmark = pytest.mark.integration

# Outbound deadlines shortened so that A's calls to the tarpit fault within the test (each call cut after 2 s, no
# retry started 6 s after the first attempt); every other bound as `waymark serve` has it.
COMPRESSED = {"WAYMARK_OUTBOUND_MAX_SECONDS": "2", "WAYMARK_OUTBOUND_ACTION_MAX_SECONDS": "6"}


def _outbound_calls_end(tarpits: Tarpits, data_dir: Path) -> bool:
    """Whether an `http` call of `waymark serve`'s engine to the tarpit ends by itself (a total deadline) rather
    than reading one byte a second for ever."""
    settings = Settings(data_dir=data_dir, allow_private_destinations=True)
    tenants = open_tenants(settings)
    engine = open_engine(settings, tenants)

    def call() -> None:
        with contextlib.suppress(Exception):  # a fault is an end too
            engine.services.http.send(HttpRequest("POST", tarpits.url("/probe"), {}, None, 5.0))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(15)
    ended = not caller.is_alive()
    for part in (engine.services.http, engine.events, engine.definitions, engine.queue, engine.parked_store, tenants):
        close = getattr(part, "close", None)
        if callable(close):
            close()
    return ended


@pytest.mark.timeout(1200)
def test_a_hostile_tenant_does_not_hold_back_another(tmp_path: Path) -> None:
    # The bound on expression cost and the total deadline of outbound calls come from the other half of issue 16
    # (engine/domain/cel_cost.py, the outbound guard): until both are in, a hostile expression holds the GIL for
    # minutes and an `http` action to a tarpit never ends, and this test cannot finish.
    if importlib.util.find_spec("engine.domain.cel_cost") is None:
        pytest.skip("needs the bound on expression cost (issue 16)")
    tarpits = Tarpits()
    try:
        if not _outbound_calls_end(tarpits, tmp_path / "probe"):
            pytest.skip("needs a total deadline on outbound calls (issue 16)")
        with running_server(**COMPRESSED) as url:
            scenario = NoisyNeighbour(url)
            victim, hostile = scenario.prepare_victim(), scenario.prepare_hostile(tarpits)
            with scenario.hostile_load(hostile):
                run = scenario.run_victim(victim)
                during = tarpits.stats()
            ended = scenario.hostile_outcomes(hostile, settle_seconds=600)
    finally:
        tarpits.close()

    assert run.outcomes == {"applied": 1000} and len(run.create_ms) == 200
    # A was at it while B ran: its action and its webhook were stuck in the tarpits.
    assert during["requests"].get("/action", 0) >= 1 and during["requests"].get("/hook", 0) >= 1
    assert scenario.hostile_ids and set(scenario.hostile_workflows) | set(scenario.refused) == {
        *(f"bomb-{name}" for name in HOSTILE_EXPRESSIONS), "tarpit-call"}
    for instance_id, outcome in ended.items():
        if instance_id.startswith("bomb-under-the-budget") and outcome["status"] == "Waiting":
            continue  # within the step budget and done within the time bound: allowed, by design
        assert outcome["status"] == "Faulted", (instance_id, outcome)
        if instance_id.startswith("bomb-"):
            assert outcome["errorType"] == "ExpressionBudgetExceeded", (instance_id, outcome)
            assert outcome["where"].endswith(".values.out"), outcome  # the expression's path
        else:
            assert "127.0.0.1" in outcome["message"], outcome  # the destination is named


@pytest.mark.timeout(600)
def test_bench_isolation_prints_its_figures_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`waymark bench isolation --json`, small: B's figures alone and beside A, every one of B's triggers applied."""
    bench_isolation(as_json=True, instances=20, triggers=100, concurrency=4, rounds=1, settle_seconds=0.0,
                    hostile_items=50)
    figures = json.loads(capsys.readouterr().out)
    for key in ("p99_ms_alone", "p99_ms_with_hostile_neighbour", "p50_ms_alone", "p50_ms_with_hostile_neighbour"):
        assert isinstance(figures[key], float) and figures[key] > 0
    assert figures["victim_outcomes_alone"] == figures["victim_outcomes_with_hostile_neighbour"] == {"applied": 100}
    assert len(figures["rounds"]) == 1 and figures["hostile_instances"] > 0
