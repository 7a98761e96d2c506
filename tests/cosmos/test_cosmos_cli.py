"""The command line on Cosmos DB: `waymark tenants onboard … --store cosmos` against the session's cosmosdb-server
(creates the tenant's database, records its configuration in the data directory's registry, prints its key once),
`--azure` (the infra/tenant.bicep deployment, printed or run) and `tenants record-outputs`, `waymark serve --store
cosmos` as a user runs it, and `waymark bench cosmos`."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from engine.cli.main import app
from engine.tenants import SqliteTenantRegistry, read_or_create_secret
from tests.cosmos_fixtures import CosmosSilo
from tests.integration.conftest import serve_api

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "cosmos-cli-admin-key-0123456789"
DEMO_KEY = "cosmos-cli-demo-key-0123456789"
WAIT = {"Prefer": "wait=10"}
OUTPUTS = {  # what `az deployment group create … --query properties.outputs` prints for infra/tenant.bicep
    "tenantId": {"type": "String", "value": "acme"},
    "cosmosEndpoint": {"type": "String", "value": "https://waymark-cosmos-abc.documents.azure.com:443/"},
    "databaseName": {"type": "String", "value": "waymark-acme"},
    "eventsContainer": {"type": "String", "value": "events"},
    "definitionsContainer": {"type": "String", "value": "definitions"},
    "eventGridTopicEndpoint": {"type": "String", "value": ""},
}


@pytest.fixture(autouse=True)
def no_waymark_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [key for key in os.environ if key.startswith("WAYMARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")


def waymark(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def registry_of(data_dir: Path) -> SqliteTenantRegistry:
    return SqliteTenantRegistry(data_dir / "tenants.db", secret=read_or_create_secret(data_dir / "secret")[0])


def containers(silo: CosmosSilo, database: str) -> set[str]:
    return {container["id"] for container in silo.client.get_database_client(database).list_containers()}


def test_onboard_on_cosmos_creates_the_database_and_records_the_configuration(tmp_path: Path,
                                                                               cosmos_silo: CosmosSilo) -> None:
    server = cosmos_silo.account.server
    data_dir = tmp_path / "data"
    database = f"{cosmos_silo.prefix}-acme"
    cosmos = ["--store", "cosmos", "--cosmos-endpoint", server.endpoint, "--cosmos-key", server.key,
              "--cosmos-no-verify", "--data-dir", str(data_dir)]
    topic = "https://acme.westeurope-1.eventgrid.azure.net/api/events"
    onboarded = waymark("tenants", "onboard", "acme", *cosmos, "--database", database, "--event-grid-topic", topic,
                        "--json")
    assert onboarded.exit_code == 0, onboarded.output
    shown = json.loads(onboarded.output)
    config = {"store": "cosmos", "cosmosEndpoint": server.endpoint, "database": database, "eventsContainer": "events",
              "definitionsContainer": "definitions", "auth": "key", "eventGridTopicEndpoint": topic,
              "eventGrid": {"endpoint": topic}}
    assert shown["id"] == "acme" and shown["key"].startswith("wmk_") and shown["config"] == config
    assert containers(cosmos_silo, database) == {"events", "definitions", "subscriptions", "parked"}

    registry = registry_of(data_dir)  # the data directory's registry: the configuration, the key's hash only
    try:
        assert registry.get("acme").config == config
        found = registry.authenticate(shown["key"])
        assert found is not None and found.id == "acme"
        assert shown["key"] not in (data_dir / "tenants.db").read_bytes().decode("latin-1")
        assert server.key not in json.dumps(dict(registry.get("acme").config))
    finally:
        registry.close()
    assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600

    # for people: the key alone on its last line, shown once
    people = waymark("tenants", "onboard", "beta", *cosmos, "--database", f"{cosmos_silo.prefix}-beta")
    assert people.exit_code == 0, people.output
    assert "onboarded" in people.output and f"{cosmos_silo.prefix}-beta" in people.output
    assert people.output.strip().splitlines()[-1].startswith("wmk_")

    again = waymark("tenants", "onboard", "acme", *cosmos, "--database", f"{cosmos_silo.prefix}-other")
    assert again.exit_code == 1 and "already exists" in again.output
    taken = waymark("tenants", "onboard", "gamma", *cosmos, "--database", database)
    assert taken.exit_code == 1 and "is tenant 'acme'" in taken.output and "siloed" in taken.output
    assert waymark("tenants", "onboard", "Not_Valid", *cosmos).exit_code == 2
    no_endpoint = waymark("tenants", "onboard", "delta", "--store", "cosmos", "--data-dir", str(data_dir))
    assert no_endpoint.exit_code == 2 and "--cosmos-endpoint" in no_endpoint.output
    no_key = waymark("tenants", "onboard", "delta", "--cosmos-endpoint", server.endpoint, "--data-dir", str(data_dir))
    assert no_key.exit_code == 2 and "--identity" in no_key.output

    # A server on that data directory serves the tenant from its Cosmos database, whatever its own default store
    # (the host has the account's key: the tenant's auth is `key`).
    with serve_api(data_dir, cosmos_key=server.key, cosmos_verify=False) as api, api.client(shown["key"]) as http:
        put = http.put("/tenants/acme/workflows/expense-claim", content=(ROOT / "samples" / "expense-claim.json")
                       .read_bytes(), headers={"Content-Type": "application/json"})
        assert put.status_code == 201, put.text
        created = http.post("/tenants/acme/instances", headers=WAIT,
                            json={"workflowId": "expense-claim", "id": "claim-1", "context": {"claimant": "Jo"}})
        assert created.status_code == 201, created.text
    events = cosmos_silo.client.get_database_client(database).get_container_client("events")
    commits = list(events.query_items("SELECT c.id FROM c WHERE c.kind = 'commit'", enable_cross_partition_query=True))
    assert [c["id"] for c in commits] == ["claim-1:0000000001"]
    assert not (data_dir / "tenants" / "acme.db").exists()


def test_onboard_on_sqlite_creates_the_tenants_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    onboarded = waymark("tenants", "onboard", "local", "--data-dir", str(data_dir), "--json")
    assert onboarded.exit_code == 0, onboarded.output
    assert json.loads(onboarded.output)["config"] == {"store": "sqlite"}
    assert (data_dir / "tenants" / "local.db").exists()


def test_onboard_azure_prints_the_bicep_command_and_records_its_outputs(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    azure = ["--azure", "--resource-group", "waymark-rg", "--cosmos-account", "waymark-cosmos-abc",
             "--data-dir", str(data_dir)]
    printed = waymark("tenants", "onboard", "acme", *azure, "--create-event-grid-topic")
    assert printed.exit_code == 0, printed.output
    command = next(line for line in printed.output.splitlines() if line.startswith("az "))
    assert command.startswith("az deployment group create --resource-group waymark-rg --name waymark-tenant-acme")
    for part in ("--template-file infra/tenant.bicep", "tenantId=acme", "cosmosAccountName=waymark-cosmos-abc",
                 "createEventGridTopic=true", "--query properties.outputs --output json"):
        assert part in command
    assert "waymark tenants record-outputs acme" in printed.output
    assert not (data_dir / "tenants.db").exists()  # printing records nothing
    assert json.loads(waymark("tenants", "onboard", "acme", *azure, "--json").output)["command"].startswith("az ")
    assert waymark("tenants", "onboard", "acme", "--azure", "--data-dir", str(data_dir)).exit_code == 2

    # --run: deploys with `az` (here a stand-in that prints what the real one would) and records the outputs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    fake_az = bin_dir / "az"
    fake_az.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/az-args"\ncat "{tmp_path}/outputs.json"\n')
    fake_az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ran = waymark("tenants", "onboard", "acme", *azure, "--run", "--json")
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "az-args").read_text().startswith("deployment group create --resource-group waymark-rg")
    recorded = json.loads(ran.output[ran.output.index("{"):])
    assert recorded["key"].startswith("wmk_") and recorded["config"] == {
        "store": "cosmos", "cosmosEndpoint": "https://waymark-cosmos-abc.documents.azure.com:443/",
        "database": "waymark-acme", "eventsContainer": "events", "definitionsContainer": "definitions",
        "auth": "identity"}

    # record-outputs: an existing tenant gets its configuration replaced (its key unchanged)
    moved = {**OUTPUTS, "databaseName": {"type": "String", "value": "waymark-acme-2"}}
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    replaced = waymark("tenants", "record-outputs", "acme", "--outputs", str(tmp_path / "moved.json"),
                       "--data-dir", str(data_dir))
    assert replaced.exit_code == 0, replaced.output
    assert "configuration replaced" in replaced.output and "wmk_" not in replaced.output
    registry = registry_of(data_dir)
    try:
        assert registry.get("acme").config["database"] == "waymark-acme-2"
        assert registry.authenticate(recorded["key"]) is not None
    finally:
        registry.close()
    # the JSON itself, for a new tenant (its key printed once); outputs of another tenant are refused
    beta = json.dumps({**OUTPUTS, "tenantId": {"value": "beta"}, "databaseName": {"value": "waymark-beta"}})
    new = waymark("tenants", "record-outputs", "beta", "--outputs", beta, "--data-dir", str(data_dir), "--json")
    assert new.exit_code == 0, new.output
    assert json.loads(new.output)["key"].startswith("wmk_")
    wrong = waymark("tenants", "record-outputs", "gamma", "--outputs", beta, "--data-dir", str(data_dir))
    assert wrong.exit_code == 1 and "beta" in wrong.output

    (bin_dir / "az").write_text("#!/bin/sh\necho 'ERROR: the resource group does not exist' >&2\nexit 3\n")
    failed = waymark("tenants", "onboard", "gamma", *azure, "--run")
    assert failed.exit_code == 1 and "the resource group does not exist" in failed.output


@pytest.fixture
def served(tmp_path: Path, cosmos_silo: CosmosSilo) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`waymark serve --store cosmos …` as a user runs it, the key in the environment."""
    server = cosmos_silo.account.server
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAYMARK_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="250", WAYMARK_ADMIN_KEY=ADMIN_KEY, WAYMARK_DEMO_KEY=DEMO_KEY,
               WAYMARK_COSMOS_KEY=server.key, WAYMARK_TENANT_DATABASE_PREFIX=f"{cosmos_silo.prefix}-")
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "serve", "--data-dir", str(tmp_path / "data"), "--port", "0",
         "--store", "cosmos", "--cosmos-endpoint", server.endpoint, "--cosmos-no-verify"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "waymark serve printed no URL:\n" + "".join(output)
        yield process, found[0], output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def test_serve_store_cosmos_starts_and_answers_healthz_and_readyz(served: tuple[subprocess.Popen[str], str, list[str]],
                                                       cosmos_silo: CosmosSilo) -> None:
    process, url, output = served
    deadline = time.monotonic() + 30
    while True:
        try:
            health = httpx.get(f"{url}/healthz", timeout=5)
            if health.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "".join(output)
        time.sleep(0.05)
    banner = "".join(output)
    assert health.json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["registry"]["tenants"] == 1 and ready.json()["checks"]["storage"]["pinged"] == 1
    assert "created tenant demo" in banner
    assert "store: cosmos at" in banner and "not verified" in banner
    assert f"{cosmos_silo.prefix}-demo" in {d["id"] for d in cosmos_silo.client.list_databases()}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEMO_KEY}"}, timeout=30) as http:
        assert {"id": "expense-claim", "version": 1} in http.get("/tenants/demo/workflows").json()["items"]
        created = http.post("/tenants/demo/instances", headers=WAIT,
                            json={"workflowId": "expense-claim", "id": "claim-1", "context": {"claimant": "Jo"}})
        assert created.status_code == 201, created.text
        assert http.get("/tenants/demo").json()["config"]["store"] == "cosmos"
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0, "".join(output)
    assert "InsecureRequestWarning" not in "".join(output)


def test_serve_store_cosmos_refuses_to_start_without_a_reachable_account(tmp_path: Path) -> None:
    result = waymark("serve", "--store", "cosmos", "--port", "0", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "needs a Cosmos endpoint" in result.output
    # an account that does not answer: nothing is recorded, so the first start can simply be run again
    unreachable = waymark("serve", "--store", "cosmos", "--cosmos-endpoint", "https://127.0.0.1:9/", "--cosmos-key",
                          "a2V5", "--port", "0", "--data-dir", str(tmp_path))
    assert unreachable.exit_code == 2 and "cannot start: cosmos is unavailable" in unreachable.output
    registry = registry_of(tmp_path)
    try:
        assert registry.list() == []
    finally:
        registry.close()


def test_bench_cosmos_is_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bool, dict[str, Any]]] = []

    def fake(as_json: bool, **sizes: Any) -> dict[str, Any]:
        calls.append((as_json, sizes))
        return {}

    monkeypatch.setattr("engine.bench.cosmos.run_cosmos_bench", fake)
    result = waymark("bench", "cosmos", "--json", "--instances", "3", "--rounds", "2", "--batch", "4")
    assert result.exit_code == 0, result.output
    assert calls == [(True, {"instances": 3, "rounds": 2, "batch": 4})]
    assert waymark("bench", "cosmos").exit_code == 0 and calls[-1] == (False, {"instances": 20, "rounds": 15,
                                                                               "batch": 16})
