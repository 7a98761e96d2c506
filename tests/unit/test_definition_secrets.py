"""Where a definition's secrets are (engine/domain/secrets.py): found wherever an `http` step or a subscription may
carry one, replaced in a copy, never in the original."""

from __future__ import annotations

import copy
from typing import Any

from engine.domain import REDACTED, redacted, replace_secrets, secret_slots


def http(url: str, **headers: str) -> dict[str, Any]:
    return {"type": "http", "url": url, "headers": headers}


DOCUMENT: dict[str, Any] = {
    "id": "w", "initialState": "a",
    "eventSubscriptions": [{"endpoint": "https://hooks.example/a", "secret": "s1"}, {"endpoint": "https://b"}],
    "states": {
        "a": {"entryConditions": [http("https://c1", **{"X-Key": "k1"})],
              "exitConditions": [{"type": "expression", "expression": "true", "headers": {"not": "a secret"}}],
              "entryActions": [http("https://a1", Authorization="t1")],
              "exitActions": [http("https://a2", Accept="application/json")],
              "transitions": [{"id": "go", "trigger": "go", "target": "b",
                               "conditions": [http("https://c2", Cookie="k2")],
                               "actions": [{"type": "log", "message": "x"}, http("https://a3", **{"X-Api-Key": "t2"})]}]},
        "b": {}}}


def test_every_place_a_secret_may_be_is_found_with_its_destination() -> None:
    found = {(slot.path, slot.value, slot.destination) for slot in secret_slots(DOCUMENT)}
    assert found == {
        ("$.eventSubscriptions[0].secret", "s1", "https://hooks.example/a"),
        ("$.states.a.entryConditions[0].headers.X-Key", "k1", "https://c1"),
        ("$.states.a.entryActions[0].headers.Authorization", "t1", "https://a1"),
        ("$.states.a.exitActions[0].headers.Accept", "application/json", "https://a2"),
        ("$.states.a.transitions[0].conditions[0].headers.Cookie", "k2", "https://c2"),
        ("$.states.a.transitions[0].actions[1].headers.X-Api-Key", "t2", "https://a3"),
    }


def test_a_redacted_copy_leaves_the_original_alone() -> None:
    before = copy.deepcopy(DOCUMENT)
    shown = redacted(DOCUMENT)
    assert before == DOCUMENT
    assert {slot.value for slot in secret_slots(shown)} == {REDACTED}
    assert shown["states"]["a"]["exitConditions"][0]["headers"] == {"not": "a secret"}, "not an http step"
    assert replace_secrets(DOCUMENT, lambda slot: slot.value.upper())["eventSubscriptions"][0]["secret"] == "S1"


def test_documents_of_any_shape_are_walked_without_error() -> None:
    number_header = {"type": "http", "url": "u", "headers": {"h": 1}}
    for junk in ({}, {"states": []}, {"states": {"a": None}}, {"eventSubscriptions": "x"},
                 {"eventSubscriptions": [{"endpoint": "e", "secret": 5}]},
                 {"states": {"a": {"transitions": [None, {"actions": "x"}], "entryActions": [number_header]}}}):
        assert secret_slots(junk) == []
        assert redacted(junk) == junk
