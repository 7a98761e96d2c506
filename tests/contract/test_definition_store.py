"""The definition-store contract, run against every adapter in conftest.py: every version of a workflow is kept,
numbered 1, 2, 3 … per workflow and tenant."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from engine.domain import DefinitionChanged, WorkflowNotFound, default_registry, parse_definition
from engine.stores.base import DefinitionStore

A, B = "tenant-a", "tenant-b"


def document(workflow_id: str, marker: str) -> dict[str, Any]:
    """A valid definition whose display name tells its versions apart."""
    doc = {
        "id": workflow_id,
        "displayName": f"{workflow_id} {marker}",
        "initialState": "open",
        "states": {
            "open": {"transitions": [{"id": "close", "trigger": "close", "target": "closed",
                                      "conditions": [{"type": "expression", "expression": "context.ok == true"}]}]},
            "closed": {"displayName": "Closed ✓"},
        },
    }
    parse_definition(doc, default_registry())  # only valid definitions are ever stored
    return doc


def test_put_numbers_versions_from_one(definition_store: DefinitionStore) -> None:
    assert [definition_store.put(A, document("orders", f"v{n}")) for n in (1, 2, 3)] == [1, 2, 3]
    assert definition_store.put(A, document("invoices", "v1")) == 1
    assert definition_store.put(A, document("orders", "v4")) == 4


def test_get_the_latest_or_a_given_version(definition_store: DefinitionStore) -> None:
    docs = [document("orders", f"v{n}") for n in (1, 2, 3)]
    for doc in docs:
        definition_store.put(A, doc)

    assert definition_store.get(A, "orders") == (3, docs[2])
    for version, doc in enumerate(docs, start=1):  # every version is kept
        assert definition_store.get(A, "orders", version) == (version, doc)


def test_documents_round_trip_and_are_copies(definition_store: DefinitionStore) -> None:
    doc = document("orders", "v1")
    kept = copy.deepcopy(doc)
    definition_store.put(A, doc)
    doc["displayName"] = "changed by the caller after put"

    _, got = definition_store.get(A, "orders")
    assert got == kept
    got["states"]["open"] = {}
    assert definition_store.get(A, "orders", 1) == (1, kept)


def test_unknown_workflows_and_versions_are_not_found(definition_store: DefinitionStore) -> None:
    definition_store.put(A, document("orders", "v1"))
    for workflow_id, version in (("nothing", None), ("nothing", 1), ("orders", 2), ("orders", 0), ("orders", -1)):
        with pytest.raises(WorkflowNotFound) as caught:
            definition_store.get(A, workflow_id, version)
        assert (caught.value.tenant, caught.value.workflow_id, caught.value.version) == (A, workflow_id, version)


def test_list_gives_each_workflow_with_its_latest_version(definition_store: DefinitionStore) -> None:
    assert definition_store.list(A) == []
    for workflow_id, marker in (("orders", "v1"), ("approvals", "v1"), ("orders", "v2"), ("zeta", "v1"),
                                ("orders", "v3"), ("approvals", "v2")):
        definition_store.put(A, document(workflow_id, marker))
    assert definition_store.list(A) == [("approvals", 2), ("orders", 3), ("zeta", 1)]


def test_tenants_are_siloed(definition_store: DefinitionStore) -> None:
    in_a = document("orders", "of a")
    definition_store.put(A, in_a)
    definition_store.put(A, document("orders", "of a, again"))
    in_b = document("orders", "of b")

    assert definition_store.put(B, in_b) == 1  # numbered apart from tenant A's versions
    assert definition_store.get(B, "orders") == (1, in_b)
    assert definition_store.get(A, "orders", 1) == (1, in_a)
    assert definition_store.list(A) == [("orders", 2)]
    assert definition_store.list(B) == [("orders", 1)]
    definition_store.put(A, document("only-a", "v1"))
    with pytest.raises(WorkflowNotFound):
        definition_store.get(B, "only-a")


def test_concurrent_puts_get_distinct_versions(definition_store: DefinitionStore) -> None:
    start = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(30)
            for k in range(5):
                versions.append(definition_store.put(A, document("orders", f"w{n}-{k}")))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(versions) == list(range(1, 21))
    assert definition_store.list(A) == [("orders", 20)]


def test_put_with_an_expected_version_is_conditional_and_atomic(definition_store: DefinitionStore) -> None:
    assert definition_store.put(A, document("orders", "v1"), expected_version=0) == 1
    with pytest.raises(DefinitionChanged) as caught:
        definition_store.put(A, document("orders", "again"), expected_version=0)  # it exists now
    assert (caught.value.expected_version, caught.value.version) == (0, 1)
    assert definition_store.put(A, document("orders", "v2"), expected_version=1) == 2
    for stale in (1, 3):
        with pytest.raises(DefinitionChanged):
            definition_store.put(A, document("orders", f"stale {stale}"), expected_version=stale)
    assert definition_store.get(A, "orders")[0] == 2  # nothing was stored by the refused puts
    assert definition_store.put(B, document("orders", "b1"), expected_version=0) == 1  # tenants apart


def test_two_editors_of_the_same_version_one_wins(definition_store: DefinitionStore) -> None:
    definition_store.put(A, document("race", "v1"))
    outcomes: list[str] = []

    def edit(marker: str) -> None:
        try:
            definition_store.put(A, document("race", marker), expected_version=1)
            outcomes.append("stored")
        except DefinitionChanged:
            outcomes.append("refused")

    editors = [threading.Thread(target=edit, args=(f"editor {n}",)) for n in range(4)]
    for editor in editors:
        editor.start()
    for editor in editors:
        editor.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "stored"]
    assert definition_store.get(A, "race")[0] == 2
