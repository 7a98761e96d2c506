"""The published definition schema: valid JSON Schema 2020-12, closed everywhere, and in agreement with the parser.

Agreement means: every sample passes both; on every invalid definition below, each problem the parser finds is
either one the schema finds too (same path, or inside a part the schema already flags) or one no JSON Schema can
express (a reference to a state that does not exist, reachability, duplicate ids, CEL that does not compile);
and the schema flags nothing the parser would let through except what the parser does not read (unknown keys,
lengths of free text).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.domain import InvalidDefinition, Problem, default_registry, parse_definition
from engine.schemas import definition_problems, definition_schema
from engine.service.definitions import validate_definition

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "samples").glob("*.json"))
SCHEMA_FILE = ROOT / "engine" / "schemas" / "workflow-definition.json"

# What only the parser can say: the schema describes one document's shape, not references inside it.
MEANING = ("which is not defined", "is unreachable", "duplicate", "more than once", "does not compile", "nest")
# What only the schema says: the parser reads the keys it knows and ignores free text's length.
# (The CloudEvent type names of a subscription's `types` are the feed's, which the domain does not know.)
SCHEMA_ONLY = ("is not a known key", "characters long", "entries; at most", "known: io.waymark.")


def parser_problems(document: Any) -> list[Problem]:
    if isinstance(document, dict):
        document = {"id": "w", **document}  # as the API hands it over: the URL names the workflow
    try:
        parse_definition(document, default_registry())
    except InvalidDefinition as e:
        return e.problems
    return []


def within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))


def base() -> dict[str, Any]:
    return {"id": "w", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "b"}]}, "b": {}}}


def mutated(**changes: Any) -> dict[str, Any]:
    """The base definition with values set at dotted paths (`states.a.transitions.0.target`)."""
    document = base()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return document


INVALID: dict[str, Any] = {
    "not an object": [1, 2],
    "no states": {"id": "w", "initialState": "a"},
    "empty states": {"id": "w", "initialState": "a", "states": {}},
    "no initial state": {"id": "w", "states": {"a": {}}},
    "bad id": mutated(id="has space"),
    "bad state id": {"id": "w", "initialState": "a", "states": {"a": {}, "b c": {}}},
    "state not an object": mutated(states__b=[]),
    "transitions not a list": mutated(states__a__transitions={}),
    "transition not an object": mutated(states__a__transitions=["go"]),
    "transition with an empty trigger": mutated(states__a__transitions=[{"id": "go", "trigger": "", "target": "b"}]),
    "interests not subjects": mutated(states__a__interests=["ok", "", 3, {"expression": "context.x", "y": 1}]),
    "interests not a list": mutated(states__b__interests="all"),
    "transition with empty id": mutated(states__a__transitions=[{"id": "", "trigger": "go", "target": "b"}]),
    "condition without type": mutated(states__a__transitions=[{"id": "go", "trigger": "go", "target": "b",
                                                               "conditions": [{"expression": "true"}]}]),
    "unknown condition type": mutated(states__a__entryConditions=[{"type": "psychic"}]),
    "unknown action type": mutated(states__a__exitActions=[{"type": "teleport"}]),
    "expression not a string": mutated(states__a__entryConditions=[{"type": "expression", "expression": 3}]),
    "expression missing": mutated(states__a__entryConditions=[{"type": "expression"}]),
    "set-context values not expressions": mutated(states__b__entryActions=[{"type": "set-context",
                                                                            "values": {"x": 1}}]),
    "set-context remove not strings": mutated(states__b__entryActions=[{"type": "set-context", "remove": [1]}]),
    "set-context with nothing": mutated(states__b__entryActions=[{"type": "set-context", "values": {}}]),
    "log without message": mutated(states__b__entryActions=[{"type": "log"}]),
    "http bad url, method, numbers": mutated(states__b__entryActions=[{
        "type": "http", "url": "ftp://x", "method": "YO", "timeoutSeconds": 0, "retries": 2.5,
        "backoffSeconds": -1, "headers": {"a": "b\nc"}}]),
    "http condition without url": mutated(states__a__exitConditions=[{"type": "http"}]),
    "subscriptions not a list": mutated(eventSubscriptions={"endpoint": "https://x"}),
    "subscription not a url": mutated(eventSubscriptions=[{"endpoint": "x"}, "y"]),
    "subscription options": mutated(eventSubscriptions=[{"endpoint": "https://x", "types": "all", "mode": "loud",
                                                         "secret": ""}]),
    "subscription type unknown": mutated(eventSubscriptions=[{"endpoint": "https://x", "types": ["x.y"]}]),
    "display name not a string": mutated(displayName=3, states__a__displayName=[]),
    "unknown keys": {"initialState": "a", "states": {"a": {"trasitions": [], "displayname": "x"}}, "foo": 1},
    "too long display name": mutated(displayName="x" * 1001),
    # What the schema cannot express: the parser alone finds these.
    "unknown target": mutated(states__a__transitions=[{"id": "go", "trigger": "go", "target": "nowhere"}]),
    "unknown initial state": mutated(initialState="nowhere"),
    "unreachable": mutated(states__island={}),
    "duplicate transition ids": mutated(states__b={"transitions": [{"id": "go", "trigger": "x", "target": "a"}]}),
    "does not compile": mutated(states__a__entryConditions=[{"type": "expression", "expression": "context.x >"}]),
    "interest does not compile": mutated(states__a__interests=[{"expression": "context.x >"}]),
}


def test_the_schema_is_valid_json_schema_2020_12_and_the_served_file() -> None:
    schema = definition_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == json.loads(SCHEMA_FILE.read_text())


def test_every_object_is_closed_except_metadata() -> None:
    open_objects: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            # Condition and Action choose a branch by `type` (if/then), the branches being the closed objects;
            # `anyOf` members add a constraint to the closed object they are in.
            dispatch = where in ("$.$defs.Condition", "$.$defs.Action") or where.endswith(".if") or ".anyOf[" in where
            if "properties" in node and node.get("additionalProperties") is not False and not dispatch:
                open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    schema = definition_schema()
    walk(schema, "$")
    assert open_objects == []
    assert schema["$defs"]["Metadata"] == {"type": "object", "description": schema["$defs"]["Metadata"]["description"]}


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_sample_carries_schema_and_passes_both(sample: Path) -> None:
    document = json.loads(sample.read_text())
    assert document["$schema"] == "../engine/schemas/workflow-definition.json"
    assert (sample.parent / document["$schema"]).resolve() == SCHEMA_FILE
    assert definition_problems(document, default_registry()) == []
    assert parser_problems(document) == []


@pytest.mark.parametrize("name", list(INVALID))
def test_schema_and_parser_agree_on_every_invalid_definition(name: str) -> None:
    document = INVALID[name]
    shape = definition_problems(copy.deepcopy(document), default_registry())
    parsed = parser_problems(copy.deepcopy(document))
    assert shape or parsed, "an invalid definition must be refused"
    for problem in parsed:
        covered = any(within(problem.path, s.path) or within(s.path, problem.path) for s in shape)
        assert covered or any(m in problem.message for m in MEANING), \
            f"the parser finds {problem} and the schema says nothing there: {shape}"
    for problem in shape:
        found = any(within(p.path, problem.path) or within(problem.path, p.path) for p in parsed)
        assert found or any(m in problem.message for m in SCHEMA_ONLY), \
            f"the schema finds {problem} and the parser lets it through: {parsed}"
    # And what the API answers lists both, each once.
    with pytest.raises(InvalidDefinition) as caught:
        validate_definition(copy.deepcopy(document), default_registry())
    answered = {(p.path, p.message) for p in caught.value.problems}
    assert {(p.path, p.message) for p in shape} <= answered


def test_meaning_problems_pass_the_schema() -> None:
    for name in ("unknown target", "unknown initial state", "unreachable", "duplicate transition ids",
                 "does not compile", "interest does not compile"):
        assert definition_problems(INVALID[name], default_registry()) == [], name


def test_unknown_keys_are_named_with_a_hint() -> None:
    found = {p.path: p.message for p in definition_problems(INVALID["unknown keys"], default_registry())}
    assert found["$.states.a.trasitions"].startswith("is not a known key (did you mean `transitions`?)")
    assert found["$.states.a.displayname"].startswith("is not a known key (did you mean `displayName`?)")
    assert "data of your own goes under `metadata`" in found["$.foo"]


def test_branch_errors_name_the_field_of_the_chosen_type() -> None:
    found = {p.path: p.message for p in definition_problems(INVALID["http bad url, method, numbers"],
                                                            default_registry())}
    action = "$.states.b.entryActions[0]"
    assert found[f"{action}.url"] == "must be an absolute http(s) URL"
    assert found[f"{action}.method"] == "is 'YO'; known: GET, POST, PUT, PATCH, DELETE"
    assert found[f"{action}.retries"] == "must be an integer"
    assert found[f"{action}.timeoutSeconds"] == "must be a number from 0.1 to 300"
    assert f"{action}.headers.a" in found


def test_metadata_takes_anything_and_is_kept() -> None:
    document = mutated(metadata={"owner": "finance", "tags": ["a"]},
                       states__a__metadata={"x": {"y": 1}})
    assert definition_problems(document, default_registry()) == []
    assert validate_definition(document, default_registry()).document["metadata"] == {"owner": "finance",
                                                                                      "tags": ["a"]}


def test_registered_types_join_the_schema() -> None:
    registry = default_registry()

    class Shout:
        def __init__(self, spec: Any) -> None:
            self.spec = spec

    registry.action("shout", Shout, schema={"type": "object", "additionalProperties": False, "required": ["type"],
                                            "properties": {"type": {"const": "shout"}, "loud": {"type": "boolean"}}})
    registry.action("anything", Shout)
    schema = definition_schema(registry)
    assert schema["$defs"]["Action"]["properties"]["type"]["enum"][-2:] == ["shout", "anything"]
    ok = mutated(states__b__entryActions=[{"type": "shout", "loud": True}, {"type": "anything", "free": 1}])
    assert definition_problems(ok, registry) == []
    bad = mutated(states__b__entryActions=[{"type": "shout", "lound": True}])
    [problem] = definition_problems(bad, registry)
    assert problem.path == "$.states.b.entryActions[0].lound" and "did you mean `loud`?" in problem.message
    assert definition_problems(ok, default_registry())  # the default registry knows neither


def test_problems_are_bounded() -> None:
    states = {f"s{i}": {"transitions": [{"id": f"t{i}", "trigger": "x", "target": "s0", "oops": 1}], "junk": 1}
              for i in range(400)}
    found = definition_problems({"id": "w", "initialState": "s0", "states": states}, default_registry())
    assert len(found) == 200
