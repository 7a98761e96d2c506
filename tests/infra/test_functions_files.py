"""The files the Azure Functions host and `func` read: host.json, requirements.txt, .funcignore,
local.settings.json.example; and the documentation site describes every setting."""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path

from engine.drivers.cosmos import cosmos_client
from engine.hosting.azure_settings import FUNCTIONS_HOST_SETTINGS, SETTINGS, load_azure_settings
from tests.cosmos_fixtures import CosmosAccount

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    pinned = {}
    for line in lines:
        match = _PIN.fullmatch(line.strip())
        assert match, f"not pinned with ==: {line!r}"
        pinned[normalised(match[1])] = match[2]
    return pinned


def test_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())

    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""
    queues = host["extensions"]["queues"]
    assert 1 <= queues["batchSize"] <= 32
    assert queues["maxDequeueCount"] >= 1
    assert re.fullmatch(r"\d\d:\d\d:\d\d", queues["visibilityTimeout"])
    assert re.fullmatch(r"\d\d:\d\d:\d\d", queues["maxPollingInterval"])
    assert queues["messageEncoding"] == "base64"  # what engine/queues/azure.py writes
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["logging"]["logLevel"]["default"]
    assert host["logging"]["applicationInsights"]["samplingSettings"]["isEnabled"] is True


def test_requirements_are_pinned_runtime_dependencies_only() -> None:
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    required = pins(lines)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = pins(project["dependencies"])
    dev = pins(project["optional-dependencies"]["dev"])

    assert "azure-functions-worker" not in required, "the Functions host brings its own worker"
    assert len(required) == len(lines), "a package is listed twice"
    # The runtime dependencies of pyproject.toml, with the same pins, plus the Functions library the app imports.
    assert required == {**runtime, "azure-functions": dev["azure-functions"]}
    assert sorted(set(required) & (set(dev) - {"azure-functions"})) == [], "a dev-only package is in requirements.txt"


def test_funcignore_keeps_the_package_small() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"tests", ".venv", "node_modules", "local.settings.json", "infra", ".git"} <= ignored
    for kept in ["function_app.py", "host.json", "requirements.txt", "engine"]:
        assert kept not in ignored


def test_local_settings_example_has_every_setting_and_loads() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    values: dict[str, str] = example["Values"]

    declared = {setting.name for setting in SETTINGS}
    assert sorted(declared - set(values)) == [], "settings missing from local.settings.json.example"
    assert sorted(set(values) - declared - FUNCTIONS_HOST_SETTINGS) == [], "unknown settings in the example"
    assert all(isinstance(value, str) for value in values.values()), "app settings are strings"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"

    settings = load_azure_settings(values)
    assert settings.queue.connection_string == "UseDevelopmentStorage=true"
    assert not settings.queue.identity_based
    assert settings.cosmos_verify_tls is False


def test_the_example_cosmos_key_signs_requests(cosmos_account: CosmosAccount) -> None:
    """The Cosmos SDK signs each request with the base64-decoded key: a key that is not base64 fails the first call
    (binascii.Error). The example's is the well-known emulator key, which cosmosdb-server accepts like any."""
    key = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]["WAYMARK_COSMOS_KEY"]
    assert base64.b64decode(key, validate=True)
    client = cosmos_client(cosmos_account.server.endpoint, key=key, verify=False)
    try:
        assert isinstance(list(client.list_databases()), list)
    finally:
        client.close()


def test_docs_describe_every_setting() -> None:
    """The documentation site's configuration reference is generated from each setting's description: every
    setting has one, and its row there carries it."""
    from engine.cli.main import app
    from engine.hosting.settings import Settings
    from tools.docs.config_reference import configuration_reference
    from tools.docs.markdown import cell

    page = configuration_reference(Settings, app, SETTINGS)
    azure = page[page.index("## The Azure Functions app"):]
    assert [setting.name for setting in SETTINGS if len(setting.description.split()) < 3] == []
    missing = [setting.name for setting in SETTINGS
               if not any(line.startswith(f"| `{setting.name}` |") and cell(setting.description) in line
                          for line in azure.splitlines())]
    assert missing == [], "the configuration reference does not describe these settings"
