"""The CLI's time and change commands against a real server: schedule, list and cancel triggers; migrate one
instance and all of a workflow's, with a dry run first."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from tests.integration.conftest import RunningServer

runner = CliRunner()

V1 = {"id": "review", "initialState": "review",
      "states": {"review": {"timeouts": [{"id": "chase", "after": "P1D", "trigger": {"topic": "chase"}}],
                            "transitions": [{"id": "chase", "trigger": "chase", "target": "review"},
                                            {"id": "approve", "trigger": "approve", "target": "done"}]},
                 "done": {}}}
V2 = {"id": "review", "initialState": "checking",
      "states": {"checking": {"timeouts": [{"id": "chase", "after": "P2D", "trigger": {"topic": "chase"}}],
                              "transitions": [{"id": "chase", "trigger": "chase", "target": "checking"},
                                              {"id": "approve", "trigger": "approve", "target": "done"}]},
                 "done": {}}}


@pytest.fixture(scope="module")
def cli(api_server: RunningServer) -> Iterator[tuple[str, list[str]]]:
    tenant = f"time-{uuid.uuid4().hex[:8]}"
    key = api_server.onboard(tenant, samples=False)
    with api_server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/review", json=V1).status_code == 201
    yield tenant, ["--url", api_server.url, "--key", key, "--tenant", tenant]


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_schedule_list_and_cancel_a_trigger(cli: tuple[str, list[str]]) -> None:
    _, options = cli
    run("instances", "create", "review", "--id", "s-1", "--wait", "10", *options)
    out = run("trigger", "s-1", "approve", "--id", "approve-later", "--delay", "PT2H", *options).output
    assert "scheduled: trigger approve-later at " in out
    listed = json.loads(run("instances", "scheduled", "s-1", "--json", *options).output)["items"]
    assert [(item["timerId"], item["kind"]) for item in listed] == [("approve-later", "trigger"),
                                                                      ("chase", "timeout")]
    assert "approve-later" in run("instances", "scheduled", "s-1", *options).output
    assert "cancelled: approve-later" in run("instances", "cancel", "s-1", "approve-later", "--reason", "no",
                                             *options).output
    gone = run("instances", "cancel", "s-1", "never-was", *options, code=1)
    assert "Scheduled trigger not found" in gone.output
    history = json.loads(run("instances", "history", "s-1", "--json", *options).output)["items"]
    assert [e["type"] for e in history] == ["Created", "TimerScheduled", "TimerScheduled", "TimerCancelled"]
    assert "scheduled trigger approve-later canc" in run("instances", "history", "s-1", *options).output


def test_migrate_one_then_all_with_a_dry_run(cli: tuple[str, list[str]], api_server: RunningServer) -> None:
    tenant, options = cli
    with api_server.client(options[3]) as http:
        assert http.put(f"/tenants/{tenant}/workflows/moving", json={**V1, "id": "moving"}).status_code == 201
        for n in range(3):
            run("instances", "create", "moving", "--id", f"m-{n}", "--wait", "10", *options)
        assert http.put(f"/tenants/{tenant}/workflows/moving", json={**V2, "id": "moving"}).status_code == 200
    refused = run("instances", "migrate", "m-0", "--to-version", "2", "--reason", "v2", *options, code=1)
    assert "$.stateMap" in refused.output and "review" in refused.output
    dry = run("instances", "migrate", "m-0", "--to-version", "2", "--map", "review=checking", "--reason", "v2",
              "--dry-run", *options)
    assert "m-0: would-migrate" in dry.output
    done = json.loads(run("instances", "migrate", "m-0", "--to-version", "2", "--map", "review=checking",
                          "--reason", "v2", "--json", *options).output)
    assert (done["outcome"], done["instance"]["workflowVersion"], done["instance"]["state"]) == (
        "migrated", 2, "checking")
    preview = run("instances", "migrate-all", "moving", "--from-version", "1", "--to-version", "2", "--map",
                  "review=checking", "--reason", "v2", "--dry-run", *options).output
    assert "2 of 2 instance(s) could move to v2" in preview
    assert "m-1: would-migrate" in preview and "m-2: would-migrate" in preview
    report = run("instances", "migrate-all", "moving", "--to-version", "2", "--map", "review=checking",
                 "--reason", "v2", "--yes", *options).output
    assert "m-1: migrated" in report and "m-2: migrated" in report
    assert "m-0: refused: $.toVersion: the instance is on version 2 already" in report  # the others go on
    chased = json.loads(run("instances", "show", "m-1", "--json", *options).output)
    assert chased["timers"][0]["trigger"]["topic"] == "chase" and chased["state"] == "checking"
