"""The rough edges a newcomer hits in the first hour (issue 15), each against a real server: the answer to a
repeated trigger id, a `Prefer: wait` that is not understood, `waymark trigger`'s exit codes, a history table
that fits the terminal, an invalid definition's problems listed once, `feed tail`'s wording, and what answering
"no" to a batch prompt does."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from engine.cli.main import app
from engine.hosting.worker import WorkerPool
from tests.integration.conftest import RunningServer, serve_api
from tests.integration.test_operations import PAYMENTS

pytestmark = pytest.mark.integration

runner = CliRunner()
CLAIM = {"workflowId": "expense-claim", "context": {"claimant": "J George"}}


@pytest.fixture(scope="module")
def cli(api_server: RunningServer) -> Iterator[list[str]]:
    tenant = f"hour-{uuid.uuid4().hex[:8]}"
    key = api_server.onboard(tenant)
    with api_server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/payments", json=PAYMENTS).status_code == 201
    yield ["--url", api_server.url, "--key", key, "--tenant", tenant]


def waymark(*args: str, input: str | None = None, columns: int = 100) -> Result:
    return runner.invoke(app, list(args), input=input, env={"COLUMNS": str(columns), "NO_COLOR": "1"})


def claim(options: list[str]) -> str:
    instance_id = f"claim-{uuid.uuid4().hex[:6]}"
    created = waymark("instances", "create", "expense-claim", "--id", instance_id, "--context",
                      '{"claimant": "J George"}', "--wait", "10", *options)
    assert created.exit_code == 0, created.output
    return instance_id


# ---------------------------------------------------------------------------------------------- HTTP


def test_a_repeated_trigger_id_is_answered_by_what_is_recorded_and_applied_once(tmp_path: Path) -> None:
    """No worker runs at first, so the first send is certainly still queued when it is repeated: the repeat is
    accepted again (202, the same body). Once the first is applied, a repeat answers its result (200) at once, and
    a repeat with `Prefer: wait` waits for that result. One transition is recorded."""
    with serve_api(tmp_path, workers=0) as server:
        key = server.onboard("acme")
        url = "/tenants/acme/instances/claim-1/triggers"
        trigger = {"id": "amount-1", "topic": "update", "content": {"amount": 12.5}}
        creation = {**CLAIM, "id": "claim-1", "triggerId": "create-1"}
        engine = server.service.engine
        with server.client(key) as http:
            assert http.post("/tenants/acme/instances", json=creation).status_code == 202
            assert process_all(engine) >= 1
            assert http.post("/tenants/acme/instances", json=creation).status_code == 201  # recorded: at once
            first = http.post(url, json=trigger)
            again = http.post(url, json=trigger)
            assert (first.status_code, again.status_code) == (202, 202)
            assert first.json() == again.json() == {"triggerId": "amount-1"}
            pool = WorkerPool(engine, 1)
            pool.start()
            try:
                waited = http.post(url, json=trigger, headers={"Prefer": "wait=10"})
            finally:
                pool.stop()
            assert waited.status_code == 200, waited.text
            assert waited.json()["outcome"] == "applied"
            at_once = http.post(url, json=trigger)
            assert at_once.status_code == 200 and at_once.json() == waited.json()
            history = http.get("/tenants/acme/instances/claim-1/events").json()["items"]
            assert [e["triggerId"] for e in history].count("amount-1") == 1
            assert engine.events.load("acme", "claim-1").context["amount"] == 12.5


def process_all(engine: Any) -> int:
    """Run the queue's commands here, as a worker would, until it is empty; how many there were."""
    from engine.service.worker import Worker

    worker = Worker(engine.queue, engine.processor, visibility_timeout=30)
    count = 0
    while (done := worker.run_once()) > 0:
        count += done
    return count


@pytest.mark.parametrize("prefer", ["wait=abc", "wait=", "wait=nan", "wait=5s"])
def test_a_wait_preference_that_is_not_understood_is_ignored_and_said_so(api_server: RunningServer,
                                                                         prefer: str) -> None:
    """RFC 7240: a server ignores a preference it cannot comply with instead of failing the request; Waymark says
    which one it ignored, and why, in `Waymark-Preference-Ignored`."""
    tenant = f"prefer-{uuid.uuid4().hex[:6]}"
    key = api_server.onboard(tenant)
    with api_server.client(key) as http:
        response = http.post(f"/tenants/{tenant}/instances", json=CLAIM, headers={"Prefer": prefer})
        assert response.status_code == 202, response.text
        assert "preference-applied" not in response.headers
        assert response.headers["waymark-preference-ignored"].startswith("wait: not a number of seconds")
        instance_id = http.post(f"/tenants/{tenant}/instances", json=CLAIM, headers={"Prefer": "wait=10"}).json()["id"]
        trigger = http.post(f"/tenants/{tenant}/instances/{instance_id}/triggers", json={"topic": "submit"},
                            headers={"Prefer": f"respond-async, {prefer}"})
        assert trigger.status_code == 202 and "waymark-preference-ignored" in trigger.headers
        understood = http.post(f"/tenants/{tenant}/instances/{instance_id}/triggers", json={"topic": "submit"},
                               headers={"Prefer": "wait=10"})
        assert understood.headers["preference-applied"] == "wait=10"
        assert "waymark-preference-ignored" not in understood.headers


# ---------------------------------------------------------------------------------------------- CLI


def test_trigger_exit_codes_tell_the_outcome(cli: list[str]) -> None:
    instance_id = claim(cli)
    assert waymark("trigger", instance_id, "update", "--content", '{"amount": 80}', "--wait", "10", *cli).exit_code == 0
    assert waymark("trigger", instance_id, "submit", "--wait", "10", *cli).exit_code == 0
    ignored = waymark("trigger", instance_id, "approve", "--content", '{"approver": "J George"}', "--wait", "10",
                      *cli)
    assert ignored.exit_code == 3 and ignored.output.startswith("ignored:"), ignored.output
    as_json = waymark("trigger", instance_id, "approve", "--content", '{"approver": "J George"}', "--wait", "10",
                      "--json", *cli)
    assert as_json.exit_code == 3 and json.loads(as_json.output)["outcome"] == "ignored"
    accepted = waymark("trigger", instance_id, "nothing-listens", *cli)
    assert accepted.exit_code == 0 and accepted.output.startswith("accepted:")  # no --wait: accepted is success
    payment = f"pay-{uuid.uuid4().hex[:6]}"
    assert waymark("instances", "create", "payments", "--id", payment, "--context", '{"total": 10}', "--wait", "10",
                   *cli).exit_code == 0
    faulted = waymark("trigger", payment, "split", "--content", '{"parts": 0}', "--wait", "10", *cli)
    assert faulted.exit_code == 5 and faulted.output.startswith("faulted:"), faulted.output
    help_text = " ".join(waymark("trigger", "--help").output.split())
    assert "3 ignored" in help_text and "5 faulted" in help_text


def test_history_fits_the_terminal_and_wide_shows_everything(cli: list[str]) -> None:
    instance_id = claim(cli)
    waymark("trigger", instance_id, "update", "--content", '{"amount": 12.5}', "--wait", "10", "--id",
            "a-rather-long-trigger-id-0123456789", *cli)
    waymark("trigger", instance_id, "approve", "--content", '{"approver": "J George"}', "--wait", "10", *cli)
    for columns in (100, 80):
        table = waymark("instances", "history", instance_id, *cli, columns=columns)
        assert table.exit_code == 0, table.output
        lines = table.output.splitlines()
        assert max(len(line) for line in lines) <= columns, table.output
        rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
        assert [row[0] for row in rows] == ["1", "2", "3"], table.output  # one line per event
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", row[1]) and re.fullmatch(r"\d\d:\d\d:\d\d", row[2])
                   for row in rows), table.output
        assert "a-rather-lo…" in table.output  # a long trigger id is cut
    wide = waymark("instances", "history", instance_id, "--wide", *cli)
    text = "".join(wide.output.split())
    assert "a-rather-long-trigger-id-0123456789" in text
    assert "hasnotransitionfortopic'approve'" in text


def test_an_invalid_definition_lists_each_problem_once(cli: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"id": "broken", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "nowhere"}]}, "b": {}}}))
    result = waymark("workflows", "put", str(broken), *cli)
    assert result.exit_code == 1
    assert result.output.count("nowhere") == 1 and result.output.count("unreachable") == 1, result.output
    assert result.output.startswith("Invalid workflow definition: workflow 'broken' is invalid (2 problem(s))")


def test_feed_tail_says_what_happened(cli: list[str]) -> None:
    instance_id = claim(cli)
    waymark("trigger", instance_id, "update", "--content", '{"amount": 1}', "--wait", "10", *cli)
    lines = [line for line in waymark("feed", "tail", "--no-follow", "--limit", "1000", *cli).output.splitlines()
             if instance_id in line]
    assert "None" not in "".join(lines)
    assert "created in draft (Waiting)" in lines[0] and "transitioned draft → draft" in lines[1], lines


def test_declining_a_batch_prompt_does_nothing_and_exits_0(cli: list[str]) -> None:
    payment = f"pay-{uuid.uuid4().hex[:6]}"
    waymark("instances", "create", "payments", "--id", payment, "--context", '{"total": 10}', "--wait", "10", *cli)
    waymark("trigger", payment, "split", "--content", '{"parts": 0}', "--wait", "10", *cli)
    filters = ["--reason", "tidy", "--workflow", "payments"]
    declined = waymark("instances", "recover-batch", *filters, *cli, input="n\n")
    assert declined.exit_code == 0, declined.output
    assert re.search(r"Recover \d+ instances?\? \[y/N\]", declined.output), declined.output
    assert "Nothing done." in declined.output
    no_answer = waymark("instances", "terminate-batch", *filters, *cli, input="")
    assert no_answer.exit_code == 1 and "--yes" in no_answer.output, no_answer.output
    still: dict[str, Any] = json.loads(waymark("instances", "show", payment, "--json", *cli).output)
    assert still["status"] == "Faulted"
