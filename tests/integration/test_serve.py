"""`waymark serve` as a user runs it: a subprocess on a free port and a temporary data directory.

It starts (demo tenant and samples on first start), serves the expense claim from creation to `paid`, answers
the remote CLI, and stops cleanly on SIGINT/SIGTERM: exit 0, promptly, nothing left on the queue.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from engine.cli.main import app
from engine.queues.sqlite import SqliteCommandQueue

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "serve-test-admin-key-0123456789"
DEMO_KEY = "serve-test-demo-key-0123456789"
WAIT = {"Prefer": "wait=10"}


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def client(self, key: str = DEMO_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAYMARK_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="250", **extra)
    return env


def start(data_dir: Path) -> Served:
    """`python -m engine.cli.main serve --port 0`; the URL is read from its banner."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "serve", "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT, env=environment(WAYMARK_ADMIN_KEY=ADMIN_KEY, WAYMARK_DEMO_KEY=DEMO_KEY),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(process, "", data_dir)
    found = threading.Event()

    def read() -> None:  # keeps draining the pipe, so the server never blocks on a full one
        assert process.stdout is not None
        for line in process.stdout:
            served.output.append(line)
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if match and not served.url:
                served.url = match.group(1)
                found.set()

    served.reader = threading.Thread(target=read, daemon=True)
    served.reader.start()
    if not found.wait(30):
        process.kill()
        raise AssertionError("waymark serve printed no URL:\n" + "".join(served.output))
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "".join(served.output)
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = start(tmp_path / "data")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        if running.reader is not None:
            running.reader.join(5)
        if running.process.stdout is not None:
            running.process.stdout.close()


def test_serve_walks_the_expense_claim_and_stops_cleanly_on_sigint(served: Served) -> None:
    banner = "".join(served.output)
    assert "created tenant demo" in banner and "expense-claim" in banner and "WAYMARK_URL=" in banner
    assert f"dashboard: {served.url}/ui/" in banner and f"{served.url}/docs" in banner
    assert "local mode: outbound calls (webhooks, http actions and conditions) may reach loopback" in banner
    front = httpx.get(f"{served.url}/", follow_redirects=False)
    assert front.status_code == 302 and front.headers["location"] == "/ui/"
    with served.client() as http:
        assert {"id": "expense-claim", "version": 1} in http.get("/tenants/demo/workflows").json()["items"]
        response = http.post("/tenants/demo/instances", headers=WAIT,
                             json={"workflowId": "expense-claim", "id": "claim-42",
                                   "context": {"claimant": "J George"}, "interests": ["claimant:jgeorge"]})
        assert response.status_code == 201, response.text
        steps = [("update", {"amount": 12.5}, "draft"), ("submit", {}, "awaiting-approval"),
                 ("approve", {"approver": "A Boss"}, "awaiting-payment"), ("pay", {"paidAt": "2025-02-01"}, "paid")]
        for topic, content, state in steps:
            result = http.post("/tenants/demo/instances/claim-42/triggers", headers=WAIT,
                               json={"topic": topic, "content": content})
            assert result.status_code == 200, result.text
            assert result.json()["outcome"] == "applied" and result.json()["instance"]["state"] == state
        instance = http.get("/tenants/demo/instances/claim-42").json()
        assert instance["status"] == "Complete" and instance["context"]["paidAt"] == "2025-02-01"
        events = http.get("/tenants/demo/instances/claim-42/events").json()["items"]
        assert [e["type"] for e in events] == ["Created", "TransitionApplied", "TransitionApplied",
                                               "TransitionApplied", "TransitionApplied", "Completed"]
        # accepted, not waited for: these are processed before the server stops, or stay queued: never lost
        for n in range(20):
            assert http.post("/tenants/demo/instances", json={"workflowId": "expense-claim", "id": f"late-{n}",
                                                              "context": {"claimant": "X"}}).status_code == 202
    started = time.monotonic()
    assert served.stop(signal.SIGINT) == 0, "".join(served.output)
    assert time.monotonic() - started < 10
    assert "stopped" in "".join(served.output)
    with SqliteCommandQueue(served.data_dir / "queue.db") as queue:
        left = queue.depth()
        assert queue.poisoned() == []
    # whatever was not processed is still queued; whatever was processed is stored: nothing was lost
    from engine.hosting.runtime import sqlite_engine

    engine = sqlite_engine(served.data_dir)
    created = {i.id for i in engine.events.list_instances("demo", limit=1000).items}
    assert len({f"late-{n}" for n in range(20)} - created) == left


def test_the_remote_cli_against_a_running_server(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(WAYMARK_URL=served.url, WAYMARK_KEY=DEMO_KEY)

    def waymark(*args: str) -> subprocess.CompletedProcess[str]:
        """The CLI as a user runs it, in its own process."""
        return subprocess.run([sys.executable, "-m", "engine.cli.main", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    for name in [key for key in os.environ if key.startswith("WAYMARK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WAYMARK_URL", served.url)
    monkeypatch.setenv("WAYMARK_KEY", DEMO_KEY)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()

    def cli(*args: str) -> Result:
        """The same commands in this process (faster): exit code and output as above."""
        return runner.invoke(app, list(args))

    created = cli("instances", "create", "expense-claim", "--id", "cli-claim", "--context", '{"claimant": "Jo"}',
                  "--wait", "5", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["state"] == "draft"

    result = waymark("trigger", "cli-claim", "update", "--content", '{"amount": 3}', "--wait", "5", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["outcome"] == "applied" and body["instance"]["context"]["amount"] == 3

    people = cli("trigger", "cli-claim", "submit", "--wait", "5")
    assert people.exit_code == 0 and "applied" in people.output and "awaiting-approval" in people.output

    listed = waymark("instances", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)["items"]] == ["cli-claim"]
    assert "cli-claim" in cli("instances", "list", "--status", "waiting").output

    history = waymark("instances", "history", "cli-claim", "--json")
    assert history.returncode == 0, history.stdout + history.stderr
    assert [e["type"] for e in json.loads(history.stdout)["items"]] == ["Created", "TransitionApplied",
                                                                       "TransitionApplied"]
    table = cli("instances", "history", "cli-claim")
    assert table.exit_code == 0 and "submit: draft → awaiting-approval via submit" in table.output
    assert "TransitionApplied" in cli("instances", "history", "cli-claim", "--wide").output

    shown = cli("instances", "show", "cli-claim", "--json")
    assert json.loads(shown.output)["state"] == "awaiting-approval"

    diagram = cli("workflows", "diagram", "expense-claim", "--instance", "cli-claim")
    assert diagram.exit_code == 0 and diagram.output.startswith("stateDiagram-v2")
    assert "class awaiting_approval current" in diagram.output

    tenant = cli("tenants", "create", "acme", "--json", "--key", ADMIN_KEY)
    assert tenant.exit_code == 0, tenant.output
    acme_key = json.loads(tenant.output)["key"]
    put = cli("workflows", "put", str(ROOT / "samples" / "expense-claim.json"), "--tenant", "acme", "--key", acme_key)
    assert put.exit_code == 0 and "version 1" in put.output
    fetched = cli("workflows", "get", "expense-claim", "--tenant", "acme", "--key", acme_key)
    assert json.loads(fetched.output)["version"] == 1

    # errors: a problem is `title: detail` and exit 1; no server is exit 2
    missing = cli("instances", "show", "ghost")
    assert missing.exit_code == 1
    assert "Instance not found: instance 'ghost' does not exist in tenant 'demo'" in " ".join(missing.output.split())
    forbidden = cli("instances", "list", "--tenant", "acme")
    assert forbidden.exit_code == 1 and "Forbidden" in forbidden.output
    unreachable = waymark("instances", "list", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot connect" in unreachable.stdout

    assert served.stop(signal.SIGTERM) == 0
    # with --data-dir the same commands read the data directory, without a server
    local = cli("instances", "show", "cli-claim", "--data-dir", str(served.data_dir), "--json")
    assert local.exit_code == 0, local.output
    assert json.loads(local.output)["state"] == "awaiting-approval"
