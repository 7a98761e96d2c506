"""The expense claim from creation to paid, on Cosmos end to end below the API: commands on a queue, the worker,
the command processor, the Cosmos event and definition stores, and the change feed's outbox marking each commit
(which is what builds the instance index). (The API walk with `--store cosmos` is the lead's.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.domain import EventType, Status, Trigger
from engine.feed import ChangeFeed, SqliteSubscriptionStore
from engine.queues.memory import MemoryCommandQueue
from engine.service.commands import Broadcast, CreateInstance, SendTrigger, to_message
from engine.service.engine import Engine
from engine.service.worker import Worker
from tests.cosmos_fixtures import CosmosSilo

T = "acme"


def test_the_expense_claim_walk_on_cosmos(cosmos_silo: CosmosSilo, expense_claim: dict[str, Any],
                                          tmp_path: Path) -> None:
    engine = Engine(events=cosmos_silo.event_store(), definitions=cosmos_silo.definition_store(),
                    queue=MemoryCommandQueue())
    feed = ChangeFeed(engine.events, SqliteSubscriptionStore(tmp_path), definitions=engine.catalog,
                      tenants=lambda: [T])
    engine.processor.on_commit = feed.on_commit
    worker = Worker(engine.queue, engine.processor)
    try:
        assert engine.catalog.put(T, expense_claim).version == 1

        commands = [
            CreateInstance(T, "claim-42", "expense-claim", "create-42", context={"claimant": "J George"},
                           interests=("claimant:jgeorge",)),
            CreateInstance(T, "claim-43", "expense-claim", "create-43", context={"claimant": "A Other"}),
            SendTrigger(T, "claim-42", Trigger("update", "t-update", {"amount": 12.5})),
            SendTrigger(T, "claim-42", Trigger("update", "t-update", {"amount": 999})),  # redelivered: once
            SendTrigger(T, "claim-42", Trigger("submit", "t-submit", {})),
            SendTrigger(T, "claim-42", Trigger("approve", "t-self", {"approver": "J George"})),  # ignored
            Broadcast(T, Trigger("approve", "t-approve", {"approver": "M Manager"}, ("claimant:jgeorge",))),
            SendTrigger(T, "claim-42", Trigger("pay", "t-pay", {"paidAt": "2026-03-01"})),
            SendTrigger(T, "claim-42", Trigger("update", "t-late", {"amount": 1})),  # rejected: complete
        ]
        for command in commands:
            engine.queue.send(to_message(command))
        while worker.run_once():
            pass
        assert engine.queue.depth() == 0 and engine.queue.poisoned(limit=10) == []
        assert feed.dispatcher.drain(30)

        claim = engine.events.load(T, "claim-42")
        assert (claim.state, claim.status, claim.version) == ("paid", Status.COMPLETE, 8)
        assert claim.context == {"claimant": "J George", "amount": 12.5, "approver": "M Manager",
                                 "paidAt": "2026-03-01"}
        history = engine.events.read(T, "claim-42")
        assert [e.sequence for e in history] == list(range(1, 9))
        assert [e.type for e in history] == [
            EventType.CREATED, EventType.TRANSITION_APPLIED, EventType.TRANSITION_APPLIED,
            EventType.TRIGGER_IGNORED, EventType.TRANSITION_APPLIED, EventType.TRANSITION_APPLIED,
            EventType.COMPLETED, EventType.TRIGGER_REJECTED]
        assert [e.trigger_id for e in history].count("t-update") == 1

        # The outbox marked every commit, which indexed every instance: listings come from the index alone.
        assert engine.events.undispatched(T) == []
        assert [i.id for i in engine.events.list_instances(T, status="Complete").items] == ["claim-42"]
        assert [i.id for i in engine.events.list_instances(T, state="draft").items] == ["claim-43"]
        assert engine.events.interested(T, ["claimant:jgeorge"]) == []  # claim-42 is Complete: no interests
        assert engine.events.interested(T, ["claim-43", "claim-42"]) == ["claim-43"]  # its id, while it lives
        assert engine.events.repair_index(T) == 0  # nothing left behind

        page = feed.read(T, after=0, limit=100)
        assert page.commits == 8  # claim-43's creation and claim-42's 7 commits (the redelivery wrote nothing)
        assert page.events[-1].get_id() == "claim-42:8"
        assert feed.read(T, after=page.next_position).commits == 0
    finally:
        feed.close()
