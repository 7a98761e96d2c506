"""function_app.py as the Functions host indexes it: one app object, its functions and their bindings, the app
settings they name, and an import that needs no settings (the first invocation then fails with the listing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import azure.functions as func
import pytest

from engine.hosting.azure import MAX_DEQUEUE_COUNT
from engine.hosting.azure_settings import SETTINGS, AzureSettingsError, load_azure_settings
from tests.functions.harness import HTTP_FUNCTION, QUEUE_FUNCTION, ROOT, TIMER_FUNCTION, function_app, functions

SETTING_NAMES = {setting.name for setting in SETTINGS}


def _bindings(name: str) -> list[dict[str, Any]]:
    bindings: list[dict[str, Any]] = json.loads(functions()[name].get_function_json())["bindings"]
    return bindings


def test_one_app_object_with_four_functions() -> None:
    module = function_app()
    assert isinstance(module.app, func.AsgiFunctionApp)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp | func.AsgiFunctionApp)]
    assert apps == [module.app]
    assert sorted(functions()) == sorted([HTTP_FUNCTION, QUEUE_FUNCTION, TIMER_FUNCTION, "bring_timers_forward"])


def test_the_http_function_serves_every_route_anonymously() -> None:
    [trigger, output] = _bindings(HTTP_FUNCTION)
    assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN"
    assert trigger["route"] == "/{*route}"  # what AsgiFunctionApp registers: with routePrefix "" every path
    assert trigger["authLevel"] == "ANONYMOUS"  # the API checks its own keys
    assert set(trigger["methods"]) >= {"GET", "POST", "PUT", "DELETE"}
    assert output["type"] == "http"
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_the_queue_function_binds_the_command_queue() -> None:
    [trigger] = _bindings(QUEUE_FUNCTION)
    assert (trigger["type"], trigger["name"]) == ("queueTrigger", "msg")
    assert trigger["queueName"] == "%WAYMARK_QUEUE_NAME%"
    assert trigger["connection"] == "WAYMARK_QUEUE"
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT  # what the queue function says is the last delivery
    assert queues["messageEncoding"] == "base64"  # the adapter writes base64 JSON


def test_the_timer_function_runs_on_the_sweep_schedule() -> None:
    [trigger] = _bindings(TIMER_FUNCTION)
    assert (trigger["type"], trigger["name"]) == ("timerTrigger", "timer")
    assert trigger["schedule"] == "%WAYMARK_SWEEP_SCHEDULE%"
    assert trigger.get("runOnStartup") is False


def test_the_timers_function_runs_every_ten_minutes() -> None:
    [trigger] = _bindings("bring_timers_forward")
    assert (trigger["type"], trigger["name"]) == ("timerTrigger", "timer")
    assert trigger["schedule"] == "0 */10 * * * *"  # timers due within 7 days reach the queue ten minutes early
    assert trigger.get("runOnStartup") is False


def test_every_app_setting_the_code_reads_is_declared() -> None:
    # What the bindings name: binding expressions and connection names.
    named: set[str] = set()
    for name in functions():
        for binding in _bindings(name):
            for value in binding.values():
                if isinstance(value, str):
                    named.update(re.findall(r"%([^%]+)%", value))
            if "connection" in binding:
                named.add(binding["connection"])
    assert named == {"WAYMARK_QUEUE_NAME", "WAYMARK_QUEUE", "WAYMARK_SWEEP_SCHEDULE"}
    assert named <= SETTING_NAMES

    # What the host's code reads: everything through load_azure_settings, whose reads are recorded here ...
    class Recording(Mapping[str, str]):
        def __init__(self) -> None:
            self.read: set[str] = set()

        def __getitem__(self, key: str) -> str:
            self.read.add(key)
            raise KeyError(key)

        def get(self, key: str, default: Any = None) -> Any:
            self.read.add(key)
            return default

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

    recording = Recording()
    with pytest.raises(AzureSettingsError):  # nothing is set: every required setting is a problem
        load_azure_settings(recording)
    assert recording.read and recording.read <= SETTING_NAMES

    # ... and nothing around it reads the environment itself.
    for path in ("function_app.py", "engine/hosting/azure.py", "engine/hosting/observability.py",
                 "engine/feed/subscriptions_cosmos.py"):
        source = (ROOT / path).read_text()
        assert not re.search(r"os\.environ|getenv\(", source), f"{path} reads the environment directly"


_NO_SETTINGS = r"""
import asyncio, json, sys
from tests.functions.harness import HTTP_FUNCTION, Invocation, function_app, functions, run_queue_function
import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

module = function_app()
names = sorted(functions())
built_at_import = module.waymark.built is not None
outcomes = {}
try:
    run_queue_function(QueueMessage(id="m-1", body=b"{}", dequeue_count=1, pop_receipt="r"))
except Exception as e:
    outcomes["queue"] = [type(e).__name__, str(e)]
handler = functions()[HTTP_FUNCTION].get_user_function()
request = func.HttpRequest("GET", "https://app.example/healthz", headers={}, body=b"")
try:
    asyncio.run(handler(request, Invocation(HTTP_FUNCTION)))
except Exception as e:
    outcomes["http"] = [type(e).__name__, str(e)]
json.dump({"names": names, "built_at_import": built_at_import, "outcomes": outcomes}, sys.stdout)
"""


def test_it_imports_without_settings_and_the_first_invocation_lists_what_is_missing() -> None:
    environ = {name: value for name, value in os.environ.items()
               if name not in SETTING_NAMES and not name.startswith("WAYMARK_")}
    done = subprocess.run([sys.executable, "-W", "error", "-c", _NO_SETTINGS], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["names"] == sorted([HTTP_FUNCTION, QUEUE_FUNCTION, TIMER_FUNCTION, "bring_timers_forward"])
    assert seen["built_at_import"] is False  # nothing connects at import
    for kind in ("queue", "http"):
        error, message = seen["outcomes"][kind]
        assert error == "AzureSettingsError"
        for required in ("WAYMARK_STORE", "WAYMARK_COSMOS_ENDPOINT", "WAYMARK_QUEUE_NAME", "WAYMARK_ADMIN_KEY",
                         "WAYMARK_SECRET", "WAYMARK_SWEEP_SCHEDULE"):
            assert f"{required} is not set" in message, (kind, message)
        assert "the command queue has no connection" in message
