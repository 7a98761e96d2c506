"""Type-checked CEL at upload (engine/domain/cel_types.py over cel_syntax's tree): a condition known not to give a
boolean is refused with its path; the variables are declared; `dyn` where only the run time knows."""

from __future__ import annotations

from typing import Any

import pytest

from engine.domain import InvalidDefinition, default_registry, parse_definition
from engine.domain.cel_syntax import parse
from engine.domain.cel_types import CelTypeError, type_of


@pytest.mark.parametrize(("source", "kind"), [
    ("1 + 2", "int"),
    ("context.amount", "dyn"),  # only the run time knows
    ("context.amount > 0", "bool"),
    ("has(context.claimant) && double(context.amount) > 0.0", "bool"),
    ("!has(trigger.content.approver) || trigger.content.approver != context.claimant", "bool"),
    ("instance.version + 1", "int"),
    ("'author:' + context.author", "string"),  # `+` never converts: a string on one side makes a string
    ("size(context.items)", "int"),
    ("context.items.all(i, i > 1)", "bool"),
    ("context.items.map(i, i * 2)", "list"),
    ("{'claim': instance.id, 'amount': context.amount}", "map"),
    ("timestamp(context.at) + duration('1h')", "timestamp"),
    ("trigger.content != null && 'p' in trigger.content && trigger.content['p'] == 'v'", "bool"),
    ("instance['state'] == 'draft'", "bool"),
    ("type(context.x) == int", "bool"),
    ("context.x ? 1 : 2", "int"),
])
def test_types_are_known_where_the_tree_says_and_dyn_elsewhere(source: str, kind: str) -> None:
    assert str(type_of(parse(source))) == kind


@pytest.mark.parametrize(("source", "message"), [
    ("ctx.amount > 0", "`ctx` is not declared (the expression may read context, instance, trigger)"),
    ("trigger.topik == 'x'", "`trigger` has no field `topik` (it has id, topic, content)"),
    ("instance.owner == 'x'", "`instance` has no field `owner`"),
    ("1 + 'a'", "cannot add a string to an int"),
    ("1 + 2.0", "cannot add a double to an int"),
    ("'a' < 1", "cannot compare a string with an int"),
    ("!5", "the operand of ! gives int, not a boolean"),
    ("1 ? 'a' : 'b'", "the test of ?: gives int, not a boolean"),
    ("[1, 2].exists(x, x)", "the predicate of exists() gives int, not a boolean"),
    ("-'a'", "cannot negate a string"),
    ("context.items.all(i, j > 1)", "`j` is not declared"),
])
def test_what_can_never_work_is_refused(source: str, message: str) -> None:
    with pytest.raises(CelTypeError, match=None) as caught:
        type_of(parse(source))
    assert message in str(caught.value)


def problems(conditions: list[dict[str, Any]] | None = None, **state: Any) -> list[str]:
    document = {"id": "w", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "b", "conditions": conditions or []}], **state},
        "b": {}}}
    with pytest.raises(InvalidDefinition) as caught:
        parse_definition(document, default_registry())
    return [str(problem) for problem in caught.value.problems]


def test_a_condition_known_not_to_be_boolean_is_refused_with_its_path() -> None:
    """The issue's example: `1 + 2` was accepted and faulted at run time (TypeMismatch: gave int)."""
    found = problems([{"type": "expression", "expression": "1 + 2"},
                      {"type": "expression", "expression": "context.name + '!'"},
                      {"type": "expression", "expression": "size(context.items)"}])
    assert found == [
        "$.states.a.transitions[0].conditions[0].expression: gives int, not a boolean",
        "$.states.a.transitions[0].conditions[1].expression: gives string, not a boolean",
        "$.states.a.transitions[0].conditions[2].expression: gives int, not a boolean",
    ]


def test_undeclared_names_are_refused_in_every_expression() -> None:
    found = problems(entryActions=[{"type": "set-context", "values": {"x": "contxt.y"}},
                                   {"type": "log", "message": "'hello ' + instance.name"}],
                     interests=[{"expression": "1 + 1"}])
    assert "$.states.a.entryActions[0].values.x: does not type-check: `contxt` is not declared" in found[0]
    assert found[1].startswith("$.states.a.entryActions[1].message: does not type-check: `instance` has no field "
                               "`name`")
    assert found[2] == "$.states.a.interests[0].expression: gives int, not a subject (a string), a list or null"


def test_dyn_passes_and_is_decided_at_run_time() -> None:
    document = {"id": "w", "initialState": "a", "states": {
        "a": {"transitions": [{"id": "go", "trigger": "go", "target": "b", "conditions": [
            {"type": "expression", "expression": "context.approved"},
            {"type": "expression", "expression": "trigger.content.ok == true"}]}]}, "b": {}}}
    parse_definition(document, default_registry())
