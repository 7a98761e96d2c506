"""Onboarding a tenant on Azure in one step — `waymark tenants onboard ID --azure … --app-url URL` — and re-running it
after a failure in each step: it finishes with one tenant, one key, its storage verified.

`az` cannot be installed here: a stand-in on PATH plays it (it records its arguments, fails when told to, and
"deploys" by creating the tenant's database and containers on cosmosdb-server, as tenant.bicep would, then prints
outputs shaped like the template's). The app is the Azure host's (engine/hosting/azure.py) on cosmosdb-server and
Azurite, served by uvicorn on a loopback port, built as in Azure: it creates no tenant storage itself.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from engine.cli.main import app as cli
from engine.drivers.cosmos import cosmos_client
from engine.hosting.azure import AzureHost
from engine.hosting.local import bind, url_of
from engine.queues.azure import AzureStorageCommandQueue
from engine.tenants.cosmos import CosmosTenantRegistry
from tests.cosmos_fixtures import CosmosAccount
from tests.functions.conftest import ADMIN_KEY, LOCAL_COSMOS_KEY, SECRET, AzureEnv

runner = CliRunner()
TENANT = "acme"

STAND_IN_AZ = r'''
import json, os, sys
from pathlib import Path
here = Path(os.environ["FAKE_AZ_DIR"])
with (here / "calls").open("a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\n")
if (here / "fail").exists():
    print("ERROR: (AuthorizationFailed) the client does not have authorization", file=sys.stderr)
    sys.exit(1)
if sys.argv[3] == "what-if":
    print("Resource changes: 5 to create.")
    sys.exit(0)
settings = json.loads((here / "settings.json").read_text())
database = settings["database"]
if (here / "deploy").exists():  # what tenant.bicep makes: the database and its four containers
    from azure.cosmos import CosmosClient, PartitionKey
    import urllib3
    urllib3.disable_warnings()
    client = CosmosClient(settings["endpoint"], credential=settings["key"], connection_verify=False)
    db = client.create_database_if_not_exists(database)
    db.create_container_if_not_exists("events", PartitionKey("/instanceId"),
                                      unique_key_policy={"uniqueKeys": [{"paths": ["/triggerKey"]}]})
    db.create_container_if_not_exists("definitions", PartitionKey("/workflowId"))
    db.create_container_if_not_exists("subscriptions", PartitionKey("/pk"))
    db.create_container_if_not_exists("parked", PartitionKey("/pk"))
configuration = {"store": "cosmos", "auth": "identity", "cosmosEndpoint": settings["endpoint"],
                 "database": database, "eventsContainer": "events", "definitionsContainer": "definitions",
                 "subscriptionsContainer": "subscriptions", "parkedContainer": "parked",
                 "eventGridTopicEndpoint": "", "eventGridTopicId": ""}
print(json.dumps({"tenantId": {"type": "String", "value": "acme"},
                  "tenantConfiguration": {"type": "Object", "value": configuration}}))
'''


class AppServer:
    """The Azure host's FastAPI app under uvicorn on a loopback port (what `--app-url` points at)."""

    def __init__(self, host: AzureHost) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(host.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def deployed(make_env: Callable[[str], AzureEnv], cosmos_account: CosmosAccount,
             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[AzureEnv, AppServer, Path]]:
    env = make_env(cosmos_account.server.endpoint)
    # What main.bicep provisions: the registry container and the queues (the host creates nothing itself).
    client = cosmos_client(env.cosmos_endpoint, key=LOCAL_COSMOS_KEY, verify=False)
    CosmosTenantRegistry(client, secret=SECRET, database=env.registry_database, create=True)
    AzureStorageCommandQueue.from_connection_string(env.azurite.connection_string, env.queue_name,
                                                    create_queues=True).close()
    host = AzureHost.from_environment(configure_observability=False)
    server = AppServer(host)
    fake = tmp_path / "az-stand-in"
    fake.mkdir()
    (fake / "settings.json").write_text(json.dumps({"endpoint": env.cosmos_endpoint, "key": LOCAL_COSMOS_KEY,
                                                    "database": f"{env.tenant_prefix}{TENANT}"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(f"#!{sys.executable}\n{STAND_IN_AZ}")
    (bin_dir / "az").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AZ_DIR", str(fake))
    monkeypatch.setenv("WAYMARK_ADMIN_KEY", ADMIN_KEY)
    try:
        yield env, server, fake
    finally:
        server.close()
        host.close()
        client.close()


def onboard(*more: str, app_url: str, code: int) -> Any:
    args = ["tenants", "onboard", TENANT, "--azure", "--resource-group", "waymark-rg", "--cosmos-account",
            "waymark-cosmos-abc", "--app-url", app_url, *more]
    result = runner.invoke(cli, args)
    assert result.exit_code == code, result.output
    return result


def test_onboarding_rerun_after_a_failure_in_each_step_ends_with_one_tenant_one_key_storage_verified(
        deployed: tuple[AzureEnv, AppServer, Path]) -> None:
    env, server, fake = deployed
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    # The plan: the exact `az` call and the HTTP calls; nothing is run.
    plan = onboard("--print", app_url=server.url, code=0).output.splitlines()
    assert plan[0] == ("1. az deployment group create --resource-group waymark-rg --name waymark-tenant-acme "
                       "--template-file infra/tenant.bicep --parameters tenantId=acme "
                       "cosmosAccountName=waymark-cosmos-abc --query properties.outputs --output json")
    assert plan[1].startswith(f"2. POST {server.url}/tenants  (admin key)") and ADMIN_KEY not in "\n".join(plan)
    assert not (fake / "calls").exists()
    onboard("--what-if", app_url=server.url, code=0)
    [what_if] = [json.loads(line) for line in (fake / "calls").read_text().splitlines()]
    assert what_if[:3] == ["deployment", "group", "what-if"] and "--query" not in what_if

    # 1. The deployment fails: nothing is registered.
    (fake / "fail").touch()
    failed = onboard(app_url=server.url, code=1)
    assert "AuthorizationFailed" in failed.output and "nothing was registered" in failed.output
    assert admin.get(f"/tenants/{TENANT}").status_code == 404
    (fake / "fail").unlink()

    # 2. Deployed, but the storage does not answer yet (as while a role assignment propagates): the tenant is left
    #    `provisioning`, with no key anyone saw.
    half = onboard(app_url=server.url, code=2)
    assert "run the command again" in " ".join(half.output.split()) and "wmk_" not in half.output
    assert admin.get(f"/tenants/{TENANT}").json()["config"]["provisioning"] is True

    # 3. The app does not answer (the storage is there now).
    (fake / "deploy").touch()
    unreachable = onboard(app_url="http://127.0.0.1:9", code=2)
    assert "did not answer" in unreachable.output

    # 4. Re-run: the registration resumes, verifies the storage, and shows the one key.
    done = onboard("--json", app_url=server.url, code=0)
    result = json.loads(done.output[done.output.index("{"):])
    key = result["key"]
    assert key.startswith("wmk_") and result["storageVerified"] is True
    tenants = [t for t in CosmosTenantRegistry(cosmos_client(env.cosmos_endpoint, key=LOCAL_COSMOS_KEY, verify=False),
                                               secret=SECRET, database=env.registry_database).list()
               if t.id == TENANT]
    assert len(tenants) == 1 and "provisioning" not in tenants[0].config
    assert tenants[0].config["database"] == f"{env.tenant_prefix}{TENANT}"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as tenant:
        assert tenant.post(f"/tenants/{TENANT}/verify").json()["storage"] == {
            "events": "ok", "definitions": "ok", "parked": "ok"}
        assert tenant.get(f"/tenants/{TENANT}/instances").status_code == 200

    # 5. Re-run once done: verified, no second key; the key still works.
    again = onboard(app_url=server.url, code=0)
    assert "onboarded already: storage verified" in " ".join(again.output.split()) and "wmk_" not in again.output
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as tenant:
        assert tenant.get(f"/tenants/{TENANT}").status_code == 200

    # 6. A key lost on the way: --rotate-key issues one, and the lost one stops working.
    rotated = onboard("--rotate-key", "--json", app_url=server.url, code=0)
    new_key = json.loads(rotated.output[rotated.output.index("{"):])["key"]
    assert new_key != key
    assert httpx.get(f"{server.url}/tenants/{TENANT}", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    deploys = [json.loads(line) for line in (fake / "calls").read_text().splitlines()]
    assert all(shlex.join(call).startswith("deployment group") for call in deploys)
    admin.close()
