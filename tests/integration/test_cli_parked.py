"""`waymark commands parked …` against a real server: list (pages, filters), show, requeue and discard by id or by
filter (dry run, confirmation), through the API with the tenant's key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.domain import Trigger
from engine.service.commands import SendTrigger, to_message
from tests.integration.conftest import RunningServer, serve_api
from tests.webhook_receiver import wait_until

runner = CliRunner()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("cli-parked"), max_dequeue_count=1) as running:
        yield running


def run(*args: str, input: str | None = None, code: int = 0) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, result.output
    return result


def test_parked_commands_from_the_command_line(server: RunningServer) -> None:
    tenant = f"c{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant)
    options = ["--url", server.url, "--key", key, "--tenant", tenant]
    for n in range(12):
        server.engine.queue.send(to_message(SendTrigger(tenant, f"late-{n % 3}", Trigger("update", f"u{n}",
                                                                                         {"amount": n + 1}))))

    def listed(*more: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(run("commands", "parked", "list", "--all", "--limit", "5",
                                                     "--json", *more, *options).output)["items"]
        return items

    wait_until(lambda: len(listed()) == 12, timeout=30, what="12 parked commands")
    page = json.loads(run("commands", "parked", "list", "--limit", "5", "--json", *options).output)
    assert len(page["items"]) == 5 and page["continuation"]
    table = run("commands", "parked", "list", "--limit", "5", *options).output
    assert "failed" in table and "--continuation" in table
    assert {p["instanceId"] for p in listed("--instance", "late-1")} == {"late-1"}
    first = listed()[0]
    shown = json.loads(run("commands", "parked", "show", first["id"], "--json", *options).output)
    assert shown["body"]["trigger"]["id"] == first["triggerId"]

    with server.client(key) as http:
        for n in range(3):
            assert http.post(f"/tenants/{tenant}/instances", headers={"Prefer": "wait=10"}, json={
                "workflowId": "expense-claim", "id": f"late-{n}", "context": {"claimant": "Ann"}}).status_code == 201

    dry = json.loads(run("commands", "parked", "requeue", "--instance", "late-0", "--dry-run", "--json",
                         *options).output)
    assert dry["dryRun"] and len(dry["matched"]) == 4 and len(listed()) == 12
    declined = run("commands", "parked", "requeue", "--instance", "late-0", *options, input="n\n", code=1)
    assert "Aborted" in declined.output and len(listed()) == 12
    done = run("commands", "parked", "requeue", "--instance", "late-0", *options, input="y\n").output
    assert done.count(": applied") == 4
    one = run("commands", "parked", "requeue", listed("--instance", "late-1")[0]["id"], *options).output
    assert ": applied" in one
    run("commands", "parked", "discard", listed("--instance", "late-1")[0]["id"], "--yes", *options)
    assert len(listed("--instance", "late-1")) == 2
    everything = json.loads(run("commands", "parked", "requeue", "--all-parked", "--yes", "--json",
                                *options).output)
    assert {r["outcome"] for r in everything["results"]} == {"applied"} and listed() == []
    refused = run("commands", "parked", "discard", *options, code=2)
    assert "give a filter" in refused.output
    with server.client(key) as http:
        applied = [e["triggerId"] for n in range(3)
                   for e in http.get(f"/tenants/{tenant}/instances/late-{n}/events").json()["items"]
                   if e["type"] == "TransitionApplied"]
    assert len(applied) == 11 == len(set(applied))  # one was discarded


def test_the_poison_queue_of_azure_is_reached_with_default_azure_credential_not_a_shared_key() -> None:
    """`--queue-account-url` builds the queue client on the account URL with DefaultAzureCredential (what main.bicep's
    `allowSharedKeyAccess: false` leaves). Only the wiring is checked here: a token cannot be had without Azure (and
    asking the managed identity endpoint would leave loopback), and Azurite takes bearer tokens only over HTTPS."""
    from azure.identity import DefaultAzureCredential

    from engine.cli.operations import _direct_queue
    from engine.queues.azure import AzureStorageCommandQueue

    url = "https://waymarkstore.queue.core.windows.net"
    with _direct_queue(None, None, "commands", url) as queue:
        assert isinstance(queue, AzureStorageCommandQueue)
        client = queue._queue
        assert client.url.startswith(f"{url}/commands")
        assert isinstance(client.credential, DefaultAzureCredential)
        assert client.credential is queue._poison.credential  # one credential for the queue and its poison queue
