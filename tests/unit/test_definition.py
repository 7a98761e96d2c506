from __future__ import annotations

import json
from typing import Any

import pytest

from engine.domain import InvalidDefinition, default_registry, load_json, mermaid, parse_definition
from engine.domain.extensions import ContextChange, Scope


def problems_of(document: Any) -> list[str]:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(document, default_registry())
    return [str(p) for p in caught.value.problems]


def test_the_samples_are_valid(expense_claim: dict[str, Any]) -> None:
    definition = parse_definition(expense_claim, default_registry(), version=3)
    assert definition.id == "expense-claim"
    assert definition.version == 3
    assert definition.initial_state == "draft"
    assert [t.id for t in definition.state("draft").transitions] == ["update", "submit", "abandon"]
    assert definition.state("paid").terminal


def test_every_problem_is_listed_not_only_the_first() -> None:
    document = {
        "id": "broken",
        "initialState": "nowhere",
        "states": {
            "a": {
                "transitions": [
                    {"id": "t1", "trigger": "go", "target": "missing"},
                    {"id": "t1", "trigger": "go", "target": "b",
                     "conditions": [{"type": "expression", "expression": "context.x >"}]},
                    {"id": "t3", "trigger": "go", "target": "b", "actions": [{"type": "teleport"}]},
                ],
                "entryConditions": [{"type": "psychic"}],
            },
            "b": {},
        },
    }
    found = problems_of(document)
    joined = "\n".join(found)
    assert "$.initialState: names the state 'nowhere', which is not defined" in joined
    assert "$.states.a.transitions[0].target: names the state 'missing'" in joined
    assert "$.states.a.transitions[1].id: duplicate transition id 't1'" in joined
    assert "$.states.a.transitions[1].conditions[0].expression: does not compile" in joined
    assert "$.states.a.transitions[2].actions[0].type: unknown action type 'teleport'" in joined
    assert "$.states.a.entryConditions[0].type: unknown condition type 'psychic'" in joined
    assert len(found) == 6


def test_unreachable_states_are_reported() -> None:
    found = problems_of({"id": "w", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "t", "trigger": "go", "target": "b"}]}, "b": {}, "island": {}}})
    assert found == ["$.states.island: is unreachable from the initial state 'a'"]


def test_initial_state_missing_and_no_states() -> None:
    found = problems_of({"id": "w"})
    assert "$.states: is required: an object of state id to state" in found
    assert any(p.startswith("$.initialState: is required") for p in found)


def test_duplicate_state_ids_in_the_json_text_are_reported() -> None:
    text = '{"id": "w", "initialState": "a", "states": {"a": {}, "a": {}}}'
    found = problems_of(load_json(text))
    assert found == ["$.states.a: is given more than once (duplicate id)"]


def test_not_an_object_and_bad_ids() -> None:
    assert problems_of([1, 2]) == ["$: a workflow definition must be a JSON object"]
    found = problems_of({"id": "has space", "initialState": "a", "states": {"a": {}}})
    assert found[0].startswith("$.id: is required")


def test_action_spec_problems_name_their_field() -> None:
    found = problems_of({"id": "w", "initialState": "a", "states": {"a": {"entryActions": [
        {"type": "http", "method": "BREW", "url": "ftp://x", "timeoutSeconds": -1, "headers": {"X": "a\r\nB: c"}},
        {"type": "set-context", "values": {"k": "1 +"}},
        {"type": "log"},
    ]}}})
    assert "$.states.a.entryActions[0].method: must be one of DELETE, GET, PATCH, POST, PUT" in found
    assert "$.states.a.entryActions[0].url: must be an absolute http(s) URL" in found
    assert "$.states.a.entryActions[0].timeoutSeconds: must be a number from 0.1 to 300" in found
    assert any(p.startswith("$.states.a.entryActions[0].headers:") for p in found)
    assert any(p.startswith("$.states.a.entryActions[1].values.k: does not compile") for p in found)
    assert "$.states.a.entryActions[2].message: is required" in found


def test_event_subscriptions_must_be_urls() -> None:
    found = problems_of({"id": "w", "initialState": "a", "states": {"a": {}},
                         "eventSubscriptions": [{"endpoint": "mailto:x"}, {}]})
    assert found == ["$.eventSubscriptions[0].endpoint: must be an absolute http(s) URL",
                     "$.eventSubscriptions[1].endpoint: must be an absolute http(s) URL"]


def test_a_definition_has_at_most_ten_event_subscriptions() -> None:
    hooks = [{"endpoint": f"https://hooks.example/{n}"} for n in range(11)]
    found = problems_of({"id": "w", "initialState": "a", "states": {"a": {}}, "eventSubscriptions": hooks})
    assert found == ["$.eventSubscriptions: has 11 subscriptions; a definition may have at most 10 (the tenant's "
                     "own, through the API, are counted apart)"]
    ten = parse_definition({"id": "w", "initialState": "a", "states": {"a": {}}, "eventSubscriptions": hooks[:10]},
                           default_registry())
    assert len(ten.event_subscriptions) == 10


def test_custom_types_can_be_registered() -> None:
    class Shout:
        def __init__(self, spec: Any) -> None:
            self.word = spec["word"]

        def run(self, scope: Scope, where: str) -> ContextChange:
            return ContextChange(set={"shout": self.word.upper()})

    registry = default_registry().copy()
    registry.action("shout", Shout)
    document = {"id": "w", "initialState": "a", "states": {"a": {"entryActions": [{"type": "shout", "word": "hi"}]}}}
    assert parse_definition(document, registry).state("a").entry_actions[0].type == "shout"
    with pytest.raises(InvalidDefinition):
        parse_definition(document, default_registry())


def test_mermaid_diagram(expense_claim: dict[str, Any]) -> None:
    text = mermaid(parse_definition(expense_claim, default_registry()), highlight="draft")
    assert text.startswith("stateDiagram-v2\n")
    assert "    [*] --> draft" in text
    assert "    draft --> awaiting_approval : submit" in text
    assert "    paid --> [*]" in text
    assert "    class draft current" in text


def test_definitions_round_trip_as_json(expense_claim: dict[str, Any]) -> None:
    definition = parse_definition(load_json(json.dumps(expense_claim)), default_registry())
    assert json.loads(json.dumps(definition.document)) == expense_claim
