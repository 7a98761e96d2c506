"""Secrets in definitions and tenant configuration: sealed in the SQLite files (read here directly), shown as "***"
on every read, and used for real by the engine (a real HTTP receiver sees the header, and the webhook signature is
made with the real secret). An upload that sends "***" back keeps the stored secret, for the same destination only.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.feed.webhook import verify_signature
from engine.tenants.sealing import SEALED_PREFIX
from tests.integration.conftest import RunningServer, serve_api
from tests.integration.test_api import problem
from tests.webhook_receiver import Receiver, Reply, wait_until

pytestmark = pytest.mark.integration

TOKEN = "Bearer payments-token-0123456789"
API_KEY = "condition-api-key-0123456789"
HOOK_SECRET = "hook-secret-0123456789abcdef"
GRID_KEY = "grid-access-key-0123456789abcdef=="
WAIT = {"Prefer": "wait=10"}


def definition(receiver: Receiver, *, token: str = TOKEN, api_key: str = API_KEY, secret: str = HOOK_SECRET,
               pay_url: str | None = None) -> dict[str, Any]:
    return {
        "id": "pay", "initialState": "due",
        "eventSubscriptions": [{"endpoint": receiver.url("/events"), "secret": secret}],
        "states": {
            "due": {"transitions": [{
                "id": "pay", "trigger": "pay", "target": "paid",
                "conditions": [{"type": "http", "url": receiver.url("/allowed"), "headers": {"X-Api-Key": api_key}}],
                "actions": [{"type": "http", "url": pay_url or receiver.url("/pay"), "retries": 0,
                             "headers": {"Authorization": token, "Accept": "application/json"}}]}]},
            "paid": {}}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(tmp_path_factory.mktemp("secrets")) as running:
        yield running


def stored_documents(server: RunningServer, tenant: str) -> list[str]:
    with sqlite3.connect(server.data_dir / "tenants" / f"{tenant}.db") as db:
        return [row[0] for row in db.execute("SELECT document FROM definitions ORDER BY version")]


def shown_secrets(document: dict[str, Any]) -> list[str]:
    transition = document["states"]["due"]["transitions"][0]
    return [document["eventSubscriptions"][0]["secret"], transition["conditions"][0]["headers"]["X-Api-Key"],
            *transition["actions"][0]["headers"].values()]


def pay(http: httpx.Client, tenant: str, receiver: Receiver, instance: str) -> dict[str, Any]:
    receiver.script("/allowed", Reply(200, {"Content-Type": "application/json"}, b"true"))
    http.post(f"/tenants/{tenant}/instances", json={"workflowId": "pay", "id": instance}, headers=WAIT)
    result: dict[str, Any] = http.post(f"/tenants/{tenant}/instances/{instance}/triggers", json={"topic": "pay"},
                                       headers=WAIT).json()
    return result


def test_definition_secrets_are_sealed_at_rest_redacted_on_read_and_used_for_real(server: RunningServer,
                                                                                   receiver: Receiver) -> None:
    tenant = f"sec-{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant, samples=False)
    with server.client(key) as http:
        put = http.put(f"/tenants/{tenant}/workflows/pay", json=definition(receiver))
        assert put.status_code == 201, put.text
        assert shown_secrets(put.json()) == ["***"] * 4
        for params in ({}, {"version": 1}):
            got = http.get(f"/tenants/{tenant}/workflows/pay", params=params)
            assert got.status_code == 200 and shown_secrets(got.json()) == ["***"] * 4
            assert got.json()["states"]["due"]["transitions"][0]["actions"][0]["url"] == receiver.url("/pay")
        assert "***" not in http.get(f"/tenants/{tenant}/workflows/pay/diagram").text
        shown_by_cli = CliRunner().invoke(app, ["workflows", "get", "pay", "--url", server.url, "--key", key,
                                                "--tenant", tenant])
        assert shown_by_cli.exit_code == 0, shown_by_cli.output
        assert shown_secrets(json.loads(shown_by_cli.output)) == ["***"] * 4 and TOKEN not in shown_by_cli.output

        [stored] = stored_documents(server, tenant)
        for secret in (TOKEN, API_KEY, HOOK_SECRET, "application/json"):
            assert secret not in stored, f"{secret!r} is in the clear in the SQLite file"
        assert stored.count(SEALED_PREFIX) == 4

        receiver.script("/pay", Reply(204))
        assert pay(http, tenant, receiver, "p-1")["outcome"] == "applied"
    [condition] = receiver.requests("/allowed")
    assert condition.headers["x-api-key"] == API_KEY
    [action] = receiver.requests("/pay")
    assert action.headers["authorization"] == TOKEN and action.headers["accept"] == "application/json"
    delivered = wait_until(lambda: receiver.requests("/events"), what="a delivery to the definition's webhook")
    assert verify_signature(HOOK_SECRET, delivered[0].body, delivered[0].headers.get("x-waymark-signature"))


def test_sending_the_redacted_value_back_keeps_the_stored_secret(server: RunningServer, receiver: Receiver) -> None:
    tenant = f"keep-{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant, samples=False)
    with server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/pay", json=definition(receiver)).status_code == 201
        shown = http.get(f"/tenants/{tenant}/workflows/pay").json()
        shown["displayName"] = "Pay, edited"  # a client edits what it read and sends it back, "***" and all
        again = http.put(f"/tenants/{tenant}/workflows/pay", json={k: v for k, v in shown.items() if k != "version"})
        assert again.status_code == 200 and again.json()["version"] == 2, again.text
        stored = stored_documents(server, tenant)[1]
        assert "***" not in stored and stored.count(SEALED_PREFIX) == 4
        receiver.script("/pay", Reply(204))
        assert pay(http, tenant, receiver, "p-2")["outcome"] == "applied"
    assert receiver.requests("/pay")[0].headers["authorization"] == TOKEN
    assert receiver.requests("/allowed")[0].headers["x-api-key"] == API_KEY


def test_a_redacted_secret_for_another_destination_or_a_new_place_is_refused(server: RunningServer,
                                                                             receiver: Receiver) -> None:
    tenant = f"move-{uuid.uuid4().hex[:6]}"
    key = server.onboard(tenant, samples=False)
    with server.client(key) as http:
        assert http.put(f"/tenants/{tenant}/workflows/pay", json=definition(receiver)).status_code == 201
        moved = definition(receiver, token="***", pay_url="https://elsewhere.example/pay")
        body = problem(http.put(f"/tenants/{tenant}/workflows/pay", json=moved), 422)
        assert [e["path"] for e in body["errors"]] == ["$.states.due.transitions[0].actions[0].headers.Authorization"]
        assert "send the value" in body["errors"][0]["message"]
        fresh = definition(receiver, secret="***")
        body = problem(http.put(f"/tenants/{tenant}/workflows/fresh", json={**fresh, "id": "fresh"}), 422)
        assert [e["path"] for e in body["errors"]] == ["$.eventSubscriptions[0].secret"]
        assert len(stored_documents(server, tenant)) == 1, "nothing was stored"


def test_a_tenants_event_grid_key_is_sealed_in_the_registry_and_redacted(tmp_path: Path) -> None:
    config = {"eventGrid": {"endpoint": "https://acme.westeurope-1.eventgrid.azure.net/api/events",
                            "key": GRID_KEY}}
    with serve_api(tmp_path, workers=0) as server:
        with server.admin() as admin:
            assert admin.post("/tenants", json={"id": "acme", "config": config}).status_code == 201
            shown = admin.get("/tenants/acme").json()
        assert shown["config"]["eventGrid"] == {"endpoint": config["eventGrid"]["endpoint"], "key": "***"}
        with sqlite3.connect(tmp_path / "tenants.db") as db:
            [(raw,)] = db.execute("SELECT config FROM tenants WHERE id = 'acme'").fetchall()
        assert GRID_KEY not in raw and json.loads(raw)["eventGrid"]["key"].startswith(SEALED_PREFIX)
        registry = server.service.tenants
        assert registry.get("acme").config["eventGrid"]["key"] == GRID_KEY, "the feed reads the real key"
        registry.update_config("acme", {**shown["config"], "note": "edited"})  # "***" sent back: kept
        assert registry.get("acme").config["eventGrid"]["key"] == GRID_KEY
        registry.create("globex")
        with pytest.raises(ValueError, match="no such secret to keep"):
            registry.update_config("globex", {"eventGrid": {"endpoint": "https://globex.example", "key": "***"}})
