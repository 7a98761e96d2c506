"""A bounded cost per CEL evaluation: nested comprehensions over big collections fault instead of hanging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.domain import (
    InvalidDefinition,
    Outcome,
    Services,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
    parse_definition,
)
from engine.domain.cel_syntax import comprehension_depth, parse


@pytest.mark.parametrize(("source", "depth"), [
    ("1 + 1", 0),
    ("context.l.map(x, x * 2)", 1),
    ("context.l.map(a, context.l.map(b, a + b))", 2),
    ("'x.map(y' + context.s", 0),
    ("context.l.filter(x, x > 1).map(y, y)", 1),
    ("context.l.all(a, context.l.exists(b, context.l.exists_one(c, a == b && b == c)))", 3),
    ("context.l.map//x\n(a, context.l.map(b, a + b))", 2),  # a comment between a macro and its arguments
    ("context.l.map(a, a).map(b, [b].map(c, c))", 2),
])
def test_comprehension_depth(source: str, depth: int) -> None:
    assert comprehension_depth(parse(source)) == depth


def test_four_nested_comprehensions_are_refused_at_validation() -> None:
    source = "context.l.all(a, context.l.all(b, context.l.all(c, context.l.all(d, true))))"
    with pytest.raises(InvalidDefinition, match="nest 4 deep"):
        parse_definition({"id": "w", "initialState": "a", "states": {"a": {"transitions": [
            {"id": "t", "trigger": "go", "target": "a",
             "conditions": [{"type": "expression", "expression": source}]}]}}}, default_registry())


def _run(items: int) -> Outcome:
    definition = parse_definition({"id": "w", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "a", "actions": [{"type": "set-context", "values": {
            "pairs": "size(trigger.content.l.filter(a, trigger.content.l.exists(b, a == b + 1)))"}}]}]}}},
        default_registry(), version=1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    instance = decide_create(definition, "i", context={}, interests=[], trigger_id="c", now=now,
                             services=Services()).instance
    return decide_trigger(instance, definition, Trigger("go", "t", {"l": list(range(items))}), now=now,
                          services=Services()).outcome


def test_within_the_budget_it_runs() -> None:
    assert _run(100) is Outcome.APPLIED


def test_over_the_budget_it_faults_before_running() -> None:
    assert _run(5000) is Outcome.FAULTED  # 5,000 by 5,000 iterations


@pytest.mark.parametrize(("source", "paths"), [
    ("has(context.claimant)", {"context": {"claimant": None}}),
    ("trigger.content.amount", {"trigger": {"content": {"amount": None}}}),
    ("context.items.map(x, x * 2)", {"context": {"items": None}}),
    ("context.name.startsWith('J')", {"context": {"name": None}}),
    ("size(context)", {"context": None}),
    ("context['a']", {"context": None}),
    ("context.a[0] + context.b.c", {"context": {"a": None, "b": {"c": None}}}),
    ("context.l.map(context, context.x)", {"context": {"l": None}}),  # the inner `context` is the macro's variable
    ("context.a // context.b\n", {"context": {"a": None}}),
    ("'context.x' + context.y.z", {"context": {"y": {"z": None}}}),
    ("context.a.b && context.a", {"context": {"a": None}}),
])
def test_the_paths_an_expression_reads(source: str, paths: dict[str, object]) -> None:
    from engine.domain.expressions import read_paths

    assert read_paths(source) == paths


def test_an_expression_sees_the_same_values_through_a_pruned_activation() -> None:
    from engine.domain.expressions import Expression, pruned

    context = {"a": {"b": 1, "c": [1, 2]}, "name": "Jo", "m": {"x": 1}, "other": "x" * 100}
    for source in ["context.a.b + size(context.a.c)", "has(context.missing) || context.name.startsWith('J')",
                   "'x' in context.m", "context.a.c.map(v, v * context.a.b)", "size(context)"]:
        expression = Expression(source)
        reduced = {name: pruned({"context": context}[name], tree) for name, tree in expression.paths.items()}
        assert expression.evaluate(reduced, where="t") == expression.evaluate({"context": context}, where="t"), source


def test_a_reused_conversion_never_hands_an_expression_other_values() -> None:
    from datetime import UTC, datetime

    import engine.domain.expressions as expressions
    from engine.domain.expressions import Expression

    expression = Expression("context.x")
    for value in [1, 1.0, True, "1", [1], {"a": 1}, 2, 1, "1", 1.0]:
        context = expression.prepare({"context": {"x": value}})
        result = expression.evaluate(context, where="t")
        assert result == value and type(result) is type(value), value
    assert expression.prepare({"context": {"x": 7}}) is expression.prepare({"context": {"x": 7}})
    # JSON would write a datetime as the string it is shown as; CEL sees a timestamp: such values are not cached.
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    as_text = expression.evaluate(expression.prepare({"context": {"x": moment.isoformat()}}), where="t")
    as_time = expression.evaluate(expression.prepare({"context": {"x": moment}}), where="t")
    assert isinstance(as_text, str) and isinstance(as_time, datetime)
    # The cache is bounded.
    for n in range(expressions.CONVERSION_CACHE_SIZE * 2):
        expression.prepare({"context": {"x": n}})
    assert len(expression._conversions.cache) <= expressions.CONVERSION_CACHE_SIZE
