"""The HTTP API on a server whose store is Cosmos DB (`waymark serve --store cosmos`), against the session's
cosmosdb-server: the expense claim from onboarding to `paid`, listing by status and the pull feed; and the outbox
sweeper keeping the Cosmos instance index up to date."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.domain import StoreUnavailable
from engine.feed import ChangeFeed, MemorySubscriptionStore
from engine.service.commands import CreateInstance
from engine.service.processor import CommandProcessor
from engine.stores.memory import MemoryEventStore
from engine.tenants.sealing import SEALED_PREFIX
from tests.cosmos_fixtures import CosmosSilo
from tests.integration.conftest import RunningServer, serve_api

WAIT = {"Prefer": "wait=10"}
CLAIM = {"claimant": "J George"}


@contextmanager
def cosmos_api(tmp_path: Path, silo: CosmosSilo, **overrides: Any) -> Iterator[RunningServer]:
    """A server on the session's cosmosdb-server; tenant `t`'s database is `{silo.prefix}-{t}`."""
    server = silo.account.server
    with serve_api(tmp_path / "data", store="cosmos", cosmos_endpoint=server.endpoint, cosmos_key=server.key,
                   cosmos_verify=False, tenant_database_prefix=f"{silo.prefix}-", **overrides) as running:
        yield running


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time limit"
        time.sleep(0.02)


def trigger(http: httpx.Client, instance: str, topic: str, content: dict[str, Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    response = http.post(f"/tenants/acme/instances/{instance}/triggers", headers=WAIT,
                         json={"topic": topic, "content": content or {}, **extra})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def databases(silo: CosmosSilo) -> set[str]:
    return {database["id"] for database in silo.client.list_databases()}


def commit_documents(silo: CosmosSilo, tenant: str) -> list[dict[str, Any]]:
    container = silo.client.get_database_client(f"{silo.prefix}-{tenant}").get_container_client("events")
    return list(container.query_items("SELECT c.id, c.dispatched, c.indexed FROM c WHERE c.kind = 'commit'",
                                      enable_cross_partition_query=True))


def test_the_expense_claim_walk_through_the_api_on_cosmos(tmp_path: Path, cosmos_silo: CosmosSilo) -> None:
    server = cosmos_silo.account.server
    with cosmos_api(tmp_path, cosmos_silo) as api:
        # Onboarding (POST /tenants) records the tenant's Cosmos database and creates it; the samples go there.
        key = api.onboard("acme")
        with api.admin() as admin:
            shown = admin.get("/tenants/acme").json()
        assert shown["config"] == {"store": "cosmos", "cosmosEndpoint": server.endpoint,
                                   "database": f"{cosmos_silo.prefix}-acme", "eventsContainer": "events",
                                   "definitionsContainer": "definitions", "auth": "key"}
        assert f"{cosmos_silo.prefix}-acme" in databases(cosmos_silo)

        with api.client(key) as http:
            assert {"id": "expense-claim", "version": 1} in http.get("/tenants/acme/workflows").json()["items"]
            created = http.post("/tenants/acme/instances", headers=WAIT,
                                json={"workflowId": "expense-claim", "id": "claim-42", "context": CLAIM,
                                      "interests": ["claimant:jgeorge"]})
            assert created.status_code == 201, created.text
            assert created.json()["state"] == "draft" and created.json()["version"] == 1
            other = http.post("/tenants/acme/instances", headers=WAIT,
                              json={"workflowId": "expense-claim", "id": "claim-43",
                                    "context": {"claimant": "A Other"}})
            assert other.status_code == 201, other.text

            first = trigger(http, "claim-42", "update", {"amount": 12.5}, id="t-update")
            assert first["outcome"] == "applied" and first["instance"]["context"]["amount"] == 12.5
            again = trigger(http, "claim-42", "update", {"amount": 999}, id="t-update")  # recorded: applied once
            assert again == first
            assert trigger(http, "claim-42", "submit")["instance"]["state"] == "awaiting-approval"
            # the claimant may not approve: an exit condition fails, the trigger is ignored
            assert trigger(http, "claim-42", "approve", {"approver": "J George"})["outcome"] == "ignored"
            # a broadcast reaches the instances interested in its subjects (the Cosmos index, and what is pending)
            broadcast = http.post("/tenants/acme/triggers", json={"topic": "approve", "id": "t-approve",
                                                                  "content": {"approver": "M Manager"},
                                                                  "subjects": ["claimant:jgeorge"]})
            assert broadcast.status_code == 202, broadcast.text
            eventually(lambda: http.get("/tenants/acme/instances/claim-42").json()["state"] == "awaiting-payment")
            paid = trigger(http, "claim-42", "pay", {"paidAt": "2026-03-01"})
            assert paid["outcome"] == "applied"
            assert (paid["instance"]["state"], paid["instance"]["status"]) == ("paid", "Complete")
            assert trigger(http, "claim-42", "update", {"amount": 1})["outcome"] == "rejected"

            # (eventually: a GET right after a `Prefer: wait` answer may be one commit behind on Cosmos, see
            # test_a_load_after_a_find_trigger_on_the_same_thread_sees_a_later_commit below)
            eventually(lambda: http.get("/tenants/acme/instances/claim-42").json()["version"] == 8)
            response = http.get("/tenants/acme/instances/claim-42")
            instance = response.json()
            assert response.headers["etag"] == '"8"'
            assert (instance["state"], instance["status"], instance["version"]) == ("paid", "Complete", 8)
            assert instance["context"] == {"claimant": "J George", "amount": 12.5, "approver": "M Manager",
                                           "paidAt": "2026-03-01"}
            history = http.get("/tenants/acme/instances/claim-42/events").json()["items"]
            assert [e["sequence"] for e in history] == list(range(1, 9))
            assert [e["type"] for e in history] == ["Created", "TransitionApplied", "TransitionApplied",
                                                    "TriggerIgnored", "TransitionApplied", "TransitionApplied",
                                                    "Completed", "TriggerRejected"]
            assert [e["triggerId"] for e in history].count("t-update") == 1

            # Listing by status, state and workflow
            def listed(**params: str) -> list[str]:
                return [i["id"] for i in http.get("/tenants/acme/instances", params=params).json()["items"]]

            assert listed(status="Complete") == ["claim-42"]
            assert listed(status="waiting") == ["claim-43"]
            assert listed(state="draft") == ["claim-43"]
            assert listed(workflowId="expense-claim") == ["claim-42", "claim-43"]
            assert listed(status="Faulted") == []

            # The pull feed: every commit once, in commit order, then nothing new
            feed = http.get("/tenants/acme/feed", params={"after": 0})
            assert feed.status_code == 200, feed.text
            events = feed.json()
            ids = [event["id"] for event in events]
            assert len(ids) == len(set(ids)) == 9  # claim-43's creation and claim-42's 8 events
            assert [i for i in ids if i.startswith("claim-42:")] == [f"claim-42:{n}" for n in range(1, 9)]
            assert events[-1]["type"] == "io.waymark.workflow.instance.trigger-rejected"
            assert {e["tenantid"] for e in events} == {"acme"}
            paid_event = next(e for e in events if e["id"] == "claim-42:6")
            assert paid_event["data"]["newState"] == "paid" and paid_event["data"]["previousState"] == (
                "awaiting-payment")
            following = int(feed.headers["Waymark-Next-Position"])
            assert http.get("/tenants/acme/feed", params={"after": following}).json() == []

        # The data is in the tenant's Cosmos database, none in the data directory's SQLite files
        assert len(commit_documents(cosmos_silo, "acme")) == 8
        assert not (api.data_dir / "tenants" / "acme.db").exists()
        with httpx.Client(base_url=api.url) as anonymous:
            health = anonymous.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        with api.admin() as admin:
            ready = admin.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["registry"]["tenants"] == 1


def test_definition_secrets_are_sealed_in_the_cosmos_document(tmp_path: Path, cosmos_silo: CosmosSilo) -> None:
    token = "Bearer cosmos-token-0123456789"
    document = {"id": "pay", "initialState": "due", "states": {
        "due": {"transitions": [{"id": "pay", "trigger": "pay", "target": "paid", "actions": [
            {"type": "http", "url": "https://payments.example/pay", "headers": {"Authorization": token}}]}]},
        "paid": {}}}
    with cosmos_api(tmp_path, cosmos_silo, workers=0) as api:
        key = api.onboard("acme", samples=False)
        with api.client(key) as http:
            assert http.put("/tenants/acme/workflows/pay", json=document).status_code == 201
            shown = http.get("/tenants/acme/workflows/pay").json()
        assert shown["states"]["due"]["transitions"][0]["actions"][0]["headers"] == {"Authorization": "***"}
        container = cosmos_silo.client.get_database_client(f"{cosmos_silo.prefix}-acme").get_container_client(
            "definitions")
        [stored] = list(container.query_items("SELECT * FROM c", enable_cross_partition_query=True))
        assert token not in json.dumps(stored) and SEALED_PREFIX in json.dumps(stored)
        action = api.engine.catalog.get("acme", "pay").states["due"].transitions[0].actions[0]
        assert action.spec["headers"] == {"Authorization": token}, "the engine runs with the real value"


def test_the_sweeper_repairs_the_cosmos_index_of_commits_the_outbox_did_not_mark(tmp_path: Path,
                                                                                 cosmos_silo: CosmosSilo) -> None:
    with cosmos_api(tmp_path, cosmos_silo, workers=0) as api:
        key = api.onboard("acme")
        # A commit made without the outbox (as if the process died right after it): neither dispatched nor indexed.
        quiet = CommandProcessor(api.engine.events, api.engine.catalog)
        quiet.create(CreateInstance("acme", "claim-1", "expense-claim", "create-1", context=CLAIM))
        assert commit_documents(cosmos_silo, "acme") == [
            {"id": "claim-1:0000000001", "dispatched": False, "indexed": False}]
        with api.client(key) as http:  # listings are right before the repair too (they read what is pending)
            assert [i["id"] for i in http.get("/tenants/acme/instances").json()["items"]] == ["claim-1"]

        report = api.service.feed.sweeper.sweep_once(wait=1)
        assert report.repaired == 1 and report.republished == 0  # not past the grace period yet
        assert commit_documents(cosmos_silo, "acme") == [
            {"id": "claim-1:0000000001", "dispatched": False, "indexed": True}]
        assert api.service.feed.sweeper.sweep_once(wait=1).repaired == 0


def test_a_load_after_a_find_trigger_on_the_same_thread_sees_a_later_commit(cosmos_silo: CosmosSilo) -> None:
    """What `waymark serve --store cosmos` does: an API thread polls `find_trigger` (Prefer: wait) and finds
    nothing yet; a worker thread commits; a GET served by the first thread then `load`s the instance."""
    import json
    import threading

    from engine.domain import Trigger
    from engine.queues.memory import MemoryCommandQueue
    from engine.service.engine import Engine

    engine = Engine(events=cosmos_silo.event_store(), definitions=cosmos_silo.definition_store(),
                    queue=MemoryCommandQueue())
    engine.catalog.put("acme", json.loads((Path(__file__).parents[2] / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance("acme", "claim-1", "expense-claim", "create-1", context=CLAIM))
    engine.processor.trigger("acme", "claim-1", Trigger("update", "t-1", {"amount": 1}))
    assert engine.events.find_trigger("acme", "claim-1", "t-2") is None  # polled: not processed yet
    worker = threading.Thread(target=engine.processor.trigger,
                              args=("acme", "claim-1", Trigger("update", "t-2", {"amount": 2})))
    worker.start()
    worker.join()
    assert engine.events.load("acme", "claim-1").version == 3


class RepairingStore(MemoryEventStore):
    """A store with an index to repair, whose repair fails for tenant `broken`."""

    def __init__(self) -> None:
        super().__init__()
        self.repairs: list[tuple[str, int]] = []

    def repair_index(self, tenant: str, *, limit: int = 1000) -> int:
        self.repairs.append((tenant, limit))
        if tenant == "broken":
            raise StoreUnavailable("cosmos", "the account cannot be reached")
        return 2


def test_a_failing_index_repair_is_logged_and_stops_nothing(caplog: pytest.LogCaptureFixture) -> None:
    store = RepairingStore()
    feed = ChangeFeed(store, MemorySubscriptionStore(), tenants=lambda: ["broken", "acme", "beta"])
    try:
        with caplog.at_level(logging.INFO, logger="waymark"):
            report = feed.sweeper.sweep_once(wait=0)
        assert store.repairs == [("broken", 500), ("acme", 500), ("beta", 500)]
        assert report.repaired == 4
        assert any("repairing the instance index of tenant broken failed" in r.getMessage() for r in caplog.records)
        # a store without repair_index is simply not asked
        plain = ChangeFeed(MemoryEventStore(), MemorySubscriptionStore(), tenants=lambda: ["acme"])
        assert plain.sweeper.sweep_once(wait=0).repaired == 0
        plain.close()
    finally:
        feed.close()
