"""The operator's CLI against a real server: detect, explain, recover, terminate, subscriptions, feed, poison."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.domain import Trigger
from engine.service.commands import SendTrigger, to_message
from engine.service.explain import explain
from tests.integration.conftest import RunningServer, serve_api
from tests.integration.test_operations import PAYMENTS
from tests.webhook_receiver import Receiver, wait_until

runner = CliRunner()


@pytest.fixture(scope="module")
def cli(api_server: RunningServer) -> Iterator[tuple[str, list[str]]]:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    key = api_server.onboard(tenant, samples=False)
    with api_server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/payments", json=PAYMENTS).status_code == 201
    yield tenant, ["--url", api_server.url, "--key", key, "--tenant", tenant]


def run(*args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result


def faulted(options: list[str]) -> str:
    instance_id = f"pay-{uuid.uuid4().hex[:8]}"
    run("instances", "create", "payments", "--id", instance_id, "--context", '{"total": 10}', "--wait", "10", *options)
    out = runner.invoke(app, ["trigger", instance_id, "split", "--content", '{"parts": 0}', "--wait", "10", "--json",
                              *options])
    assert out.exit_code == 5, out.output  # faulted (engine/cli/remote.py EXIT_CODES)
    assert json.loads(out.output)["outcome"] == "faulted"
    return instance_id


def test_list_explain_recover(cli: tuple[str, list[str]]) -> None:
    _, options = cli
    instance_id = faulted(options)
    listed = json.loads(run("instances", "list", "--status", "faulted", "--json", *options).output)
    assert instance_id in {item["id"] for item in listed["items"]}
    text = " ".join(run("instances", "explain", instance_id, *options).output.split())
    assert "is Faulted in state 'due'" in text
    assert "It FAULTED on trigger 'split'" in text and "DivisionByZero" in text
    history = json.loads(run("instances", "history", instance_id, "--json", *options).output)
    assert [e["type"] for e in history["items"]] == ["Created", "Faulted"]
    recovered = json.loads(run("instances", "recover", instance_id, "--mode", "reset", "--context", '{"parts": 2}',
                               "--reason", "parts fixed", "--by", "ops", "--json", *options).output)
    assert recovered["outcome"] == "recovered" and recovered["instance"]["status"] == "Waiting"
    out = json.loads(run("trigger", instance_id, "pay", "--wait", "10", "--json", *options).output)
    assert out["instance"]["status"] == "Complete"


def test_refused_recovery_exits_1_with_the_problem(cli: tuple[str, list[str]]) -> None:
    _, options = cli
    instance_id = faulted(options)
    run("instances", "recover", instance_id, "--mode", "reset", "--reason", "x", *options)
    result = runner.invoke(app, ["instances", "recover", instance_id, "--reason", "again", *options])
    assert result.exit_code == 1
    assert "not Faulted" in " ".join(result.output.split())


def test_batch_terminate_asks_first_and_dry_run_changes_nothing(cli: tuple[str, list[str]]) -> None:
    _, options = cli
    targets = {faulted(options) for _ in range(2)}
    dry = json.loads(run("instances", "terminate-batch", "--reason", "tidy", "--dry-run", "--json", *options).output)
    assert targets <= set(dry["matched"])
    declined = runner.invoke(app, ["instances", "terminate-batch", "--reason", "tidy", *options], input="n\n")
    assert declined.exit_code == 0 and "Nothing done." in declined.output  # declined at the prompt
    still = json.loads(run("instances", "list", "--status", "Faulted", "--json", "--all", *options).output)
    assert targets <= {item["id"] for item in still["items"]}
    run("instances", "terminate-batch", "--reason", "tidy", *options, input="y\n")
    terminated = json.loads(run("instances", "list", "--status", "Terminated", "--json", "--all", *options).output)
    assert targets <= {item["id"] for item in terminated["items"]}


def test_subscriptions_and_feed_tail(cli: tuple[str, list[str]]) -> None:
    tenant, options = cli
    receiver = Receiver()
    try:
        run("subscriptions", "put", "ops", "--endpoint", receiver.url("/ops"), "--type",
            "io.waymark.workflow.instance.faulted", *options)
        listed = json.loads(run("subscriptions", "list", "--json", *options).output)
        assert [s["status"] for s in listed["items"] if s["name"] == "ops"] == ["active"]
        instance_id = faulted(options)
        wait_until(lambda: any(e.get_subject() == instance_id for e in receiver.events("/ops")), what="a webhook")
        lines = run("feed", "tail", "--no-follow", "--json", "--limit", "1000", *options).output.splitlines()
        events = [json.loads(line) for line in lines]
        mine = [e for e in events if e["subject"] == instance_id]
        assert [e["type"] for e in mine] == ["io.waymark.workflow.instance.created",
                                             "io.waymark.workflow.instance.faulted"]
        assert mine[0]["tenantid"] == tenant
        run("subscriptions", "delete", "ops", *options)
    finally:
        receiver.close()


def test_poison_on_a_local_data_directory(tmp_path: Path) -> None:
    with serve_api(tmp_path, workers=0) as server:
        queue = server.engine.queue
        queue.send(to_message(SendTrigger("acme", "ghost", Trigger("go", "t-1"))))
        for _ in range(server.service.settings.max_dequeue_count + 1):
            for message in queue.receive(max_messages=10, visibility_timeout=30):
                queue.release(message)
    listed = json.loads(run("commands", "poison", "list", "--data-dir", str(tmp_path), "--json").output)
    [item] = listed["items"]
    assert item["instanceId"] == "ghost" and item["tenant"] == "acme"
    run("commands", "poison", "requeue", item["id"], "--data-dir", str(tmp_path))
    assert json.loads(run("commands", "poison", "list", "--data-dir", str(tmp_path), "--json").output)["items"] == []


def test_explain_says_why_in_words() -> None:
    instance = {"id": "c-1", "status": "Waiting", "state": "draft", "workflowId": "expense-claim",
                "workflowVersion": 1, "version": 3, "fault": None}
    events = [
        {"sequence": 1, "type": "Created", "at": "t1", "triggerId": "c", "data": {}},
        {"sequence": 2, "type": "TransitionApplied", "at": "t2", "triggerId": "u",
         "data": {"transition": "update", "from": "draft", "to": "draft", "topic": "update"}},
        {"sequence": 3, "type": "TriggerIgnored", "at": "t3", "triggerId": "s",
         "data": {"topic": "submit", "reason": "no transition for topic 'submit' has all its conditions true"}},
    ]
    lines = explain(instance, events)
    assert lines[0] == "c-1 is Waiting in state 'draft' (workflow expense-claim v1, 3 event(s))."
    assert "transition 'update'" in lines[1]
    assert "The last ignored trigger was 'submit' (id s) at t3: no transition" in lines[2]
    assert lines[-1] == "It is waiting for a trigger."


def test_serve_seals_webhook_secrets_at_rest_and_still_signs_with_them(tmp_path: Path) -> None:
    from engine.feed.webhook import SIGNATURE_HEADER, verify_signature

    secret = "a-webhook-secret-only-the-subscriber-knows"
    receiver = Receiver()
    try:
        with serve_api(tmp_path, workers=1) as server:
            key = server.onboard("sealed")
            with server.client(key) as http:
                response = http.put("/tenants/sealed/subscriptions/signed",
                                    json={"endpoint": receiver.url("/signed"), "secret": secret})
                assert response.status_code in (200, 201), response.text
                created = http.post("/tenants/sealed/instances", json={"workflowId": "expense-claim",
                                                                       "context": {"claimant": "Jo"}})
                assert created.status_code == 202, created.text
            wait_until(lambda: receiver.requests("/signed"), what="a signed webhook")
            delivered = receiver.requests("/signed")[0]
            assert verify_signature(secret, delivered.body, delivered.headers[SIGNATURE_HEADER.lower()])
        stored = b"".join(path.read_bytes() for path in (tmp_path / "feed").iterdir())
        assert secret.encode() not in stored and b"sealed:v1:" in stored
    finally:
        receiver.close()
