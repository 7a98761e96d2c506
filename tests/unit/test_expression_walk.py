"""A member path or presence test is answered by walking the variables only where CEL would answer the same: the
walk is checked against CEL itself on every case, and leaves the rest (errors included) to CEL."""

from __future__ import annotations

from typing import Any

import pytest

from engine.domain.errors import ExpressionError
from engine.domain.expressions import UNANSWERED, Expression
from engine.domain.extensions import Scope, Services

EXPRESSIONS = ["trigger.content.amount", "context.claimant", "has(context.claimant)", "has(trigger.content.a.b)",
               "context.a.b.c", "has(context.a.b.c)", "instance.state", " context . a ", "has( context.a )",
               "trigger.id", "context.a.b"]
VALUES: list[Any] = ["Jo", "", 0, 1, -1, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 2 ** 70, 1.5, -0.0, True,
                     False, None, [1, 2], [], {}, {"c": 1}, {"d": {"e": "f"}}]


def _contexts() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [{}]
    for value in VALUES:
        found += [{"claimant": value}, {"a": value}, {"a": {"b": value}}, {"a": {"b": {"c": value}}},
                  {"amount": value}]
    return found


def _cel(expression: Expression, instance: Any, context: Any, trigger: Any) -> Any:
    try:
        return expression.evaluate({"instance": instance, "context": context, "trigger": trigger}, where="w")
    except ExpressionError:
        return ExpressionError


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_a_walk_answers_what_cel_answers_or_leaves_it_to_cel(source: str) -> None:
    expression = Expression(source)
    assert expression.walk is not None
    answered = 0
    instance = {"id": "i", "state": "draft", "version": 3}
    for context in _contexts():
        for content in [*_contexts(), None, 5, "x", [1]]:
            trigger = {"id": "t", "topic": "update", "content": content}
            walked = expression.walk.answer(instance, context, trigger)
            if walked is UNANSWERED:
                continue
            expected = _cel(expression, instance, context, trigger)
            assert (walked, type(walked)) == (expected, type(expected)), (source, context, content)
            answered += 1
    assert answered > 0


@pytest.mark.parametrize("source", ["context.a + 1", "size(context.a) > 0", "context['a']",
                                    "context.a.b()", "trigger.content.a == 1", "!has(context.a)", "context"])
def test_other_expressions_are_always_cel(source: str) -> None:
    assert Expression(source).walk is None


def test_a_scope_answers_by_the_walk_and_faults_through_cel() -> None:
    scope = Scope({"id": "i"}, {"claimant": "Jo"}, {"id": "t", "topic": "u", "content": {"amount": 2.5}}, 2,
                  Services())
    assert scope.evaluate(Expression("trigger.content.amount"), "w") == 2.5
    assert scope.evaluate(Expression("has(context.claimant)"), "w") is True
    assert scope.evaluate(Expression("has(context.approver)"), "w") is False
    with pytest.raises(ExpressionError) as caught:
        scope.evaluate(Expression("trigger.content.missing"), "here")
    assert caught.value.where == "here" and "missing" in str(caught.value)
