"""No expression of any shape holds a worker past its budget (engine/domain/cel_cost.py, expressions.py).

A hostile tenant's tricks, each of which ran (for seconds, minutes or until memory ran out) before the cost was
bounded from a parsed tree: a comment hiding a macro from a regular expression, nested macros, strings and lists
doubling along a chain of `map`s, `+` repeated, a `map` building a list of lists. Each is refused when the
definition is uploaded or faults with `ExpressionBudgetExceeded` before it is evaluated; generated ones check that
the bound holds what `cel` really does (result sizes, iterations).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain import (
    ExpressionBudget,
    ExpressionBudgetExceeded,
    ExpressionError,
    InvalidDefinition,
    Outcome,
    Services,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
    parse_definition,
)
from engine.domain.cel_cost import ITERATION_STEPS, bound, measure
from engine.domain.cel_syntax import parse
from engine.domain.expressions import CompileError, Expression

NOW = datetime(2026, 1, 1, tzinfo=UTC)
COMMENT_TRICK = "trigger.content.l.map//x\n(a, trigger.content.l.map//y\n(b, trigger.content.l.map//z\n(c, a + b + c)))"


def _definition(expression: str) -> dict[str, Any]:
    return {"id": "w", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "a",
         "actions": [{"type": "set-context", "values": {"out": expression}}]}]}}}


class _Clock:
    """A monotonic clock that counts its readings (an evaluation reads it just before running) and can jump."""

    def __init__(self, step: float = 0.0) -> None:
        self.readings = 0
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.step
        return self.now


def _trigger(expression: str, content: dict[str, Any], *, clock: Callable[[], float] = _Clock(),
             budget: ExpressionBudget | None = None) -> tuple[Outcome, Any]:
    definition = parse_definition(_definition(expression), default_registry(), version=1)
    services = Services(clock=clock, expression_budget=budget or ExpressionBudget())
    instance = decide_create(definition, "i", context={}, interests=[], trigger_id="c", now=NOW,
                             services=services).instance
    decision = decide_trigger(instance, definition, Trigger("go", "t", content), now=NOW, services=services)
    return decision.outcome, decision.instance.fault


# ------------------------------------------------------------------------------------------- the tricks


def test_a_comment_cannot_hide_nested_macros_from_the_bound() -> None:
    """Before: the regular expression read depth 0 here, skipped the budget, and 30 items took 0.05 s, 100 took
    58 s. Now the depth is 3 and the bound refuses 100 items before evaluating."""
    clock = _Clock()
    outcome, fault = _trigger(COMMENT_TRICK, {"l": list(range(100))}, clock=clock)
    assert outcome is Outcome.FAULTED
    assert fault.error_type == "ExpressionBudgetExceeded"
    assert fault.where == "$.states.a.transitions[0].actions[0].values.out"
    assert "it was not evaluated" in fault.message
    assert clock.readings == 0, "refused before it ran"
    assert _trigger(COMMENT_TRICK, {"l": list(range(5))})[0] is Outcome.APPLIED


def test_four_levels_behind_comments_are_refused_at_upload() -> None:
    deeper = COMMENT_TRICK.replace("a + b + c", "trigger.content.l.map//w\n(d, a + b + c + d)")
    with pytest.raises(InvalidDefinition, match="nest 4 deep"):
        parse_definition(_definition(deeper), default_registry())


def test_strings_doubling_along_a_chain_are_bounded() -> None:
    doubling = "[trigger.content.s]" + ".map(a, a + a)" * 12 + "[0].size()"
    outcome, fault = _trigger(doubling, {"s": "x" * 10_000})  # would build a 40 MB string
    assert outcome is Outcome.FAULTED and fault.error_type == "ExpressionBudgetExceeded"
    assert _trigger(doubling, {"s": "x"})[0] is Outcome.APPLIED  # 4,096 characters: fine
    with pytest.raises(InvalidDefinition, match="even over empty variables"):  # 2^40 characters from nothing
        parse_definition(_definition("['x']" + ".map(a, a + a)" * 40 + "[0].size()"), default_registry())


def test_repeated_concatenation_is_bounded() -> None:
    concatenation = " + ".join(["trigger.content.s"] * 200)
    outcome, fault = _trigger(concatenation, {"s": "x" * 100_000})
    assert outcome is Outcome.FAULTED and fault.error_type == "ExpressionBudgetExceeded"
    assert _trigger(concatenation, {"s": "abc"})[0] is Outcome.APPLIED


def test_a_map_building_lists_of_lists_is_bounded() -> None:
    lists = "trigger.content.l.map(a, trigger.content.l).size()"
    outcome, fault = _trigger(lists, {"l": list(range(1_000))})  # a million elements, copied at every step
    assert outcome is Outcome.FAULTED and fault.error_type == "ExpressionBudgetExceeded"
    assert _trigger(lists, {"l": list(range(20))})[0] is Outcome.APPLIED


def test_a_flat_map_over_a_big_list_is_bounded() -> None:
    """`map` and `filter` copy their accumulated result at every step in `cel`: 16,000 numbers take ~10 s."""
    outcome, fault = _trigger("trigger.content.l.filter(x, x > 0).size()", {"l": list(range(16_000))})
    assert outcome is Outcome.FAULTED and fault.error_type == "ExpressionBudgetExceeded"
    assert _trigger("trigger.content.l.exists(x, x < 0)", {"l": list(range(16_000))})[0] is Outcome.APPLIED


def test_an_evaluation_that_ran_too_long_faults_once_it_returns() -> None:
    outcome, fault = _trigger("trigger.content.n + 1", {"n": 1}, clock=_Clock(step=5.0))
    assert outcome is Outcome.FAULTED and fault.error_type == "ExpressionBudgetExceeded"
    assert "ran 5.0 s, more than the 2 s" in fault.message


def test_the_budget_is_a_setting() -> None:
    small = ExpressionBudget(max_steps=1_000, max_seconds=2.0)
    outcome, fault = _trigger("trigger.content.l.exists(x, x < 0)", {"l": list(range(500))}, budget=small)
    assert outcome is Outcome.FAULTED and "more than the 1,000 an evaluation may take" in fault.message


def test_an_expression_the_parser_reads_otherwise_than_cel_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.domain.expressions as expressions

    monkeypatch.setattr(expressions.cel_syntax, "cel_variables", lambda tree: {"other"})
    with pytest.raises(CompileError, match="cannot be analysed"):
        Expression("context.a")


# ------------------------------------------------------------------------------------------- generated


@st.composite
def _hostile(draw: st.DrawFn) -> str:
    """A shape built from the tricks above, at most 3 comprehensions deep."""
    gap = draw(st.sampled_from(["", " ", "//c\n", " // (.map(\n "]))
    source = draw(st.sampled_from(["context.l", "[context.s]", "context.l.map(q, context.l)", "[context.l]"]))
    depth = 1
    for _ in range(draw(st.integers(1, 5))):
        move = draw(st.sampled_from(["double", "nest", "concat", "filter", "exists"]))
        if move == "double":
            source = f"{source}.map{gap}(v, v + v)"
        elif move == "nest" and depth < 3:
            source = f"context.l.map{gap}(n{depth}, {source})"
            depth += 1
        elif move == "concat":
            source = f"({source} + {source})"
        elif move == "filter":
            source = f"{source}.filter{gap}(f, true)"
        else:
            source = f"[{source}.exists{gap}(e, e == e)]"
    return f"{source}.size()"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile(), st.integers(0, 3_000), st.integers(0, 20_000))
def test_no_hostile_shape_runs_past_the_budget(source: str, items: int, chars: int) -> None:
    """Each one is refused before it runs, or runs within a bound that holds the size of what it built."""
    budget = ExpressionBudget(max_steps=3_000_000, max_seconds=60.0)
    variables = {"context": {"l": list(range(items)), "s": "x" * chars}}
    try:
        expression = Expression(source)
    except CompileError:
        return
    clock = _Clock()
    try:
        expression.evaluate(variables, where="w", budget=budget, clock=clock)
    except ExpressionBudgetExceeded:
        assert clock.readings == 0, "refused before it ran"
        return
    except ExpressionError:
        return  # `bool + bool` and such: it ran, and failed
    size, steps = bound(parse(source.removesuffix(".size()")), measure(variables))
    built = cel.compile(source.removesuffix(".size()")).execute(cel.Context(variables))
    assert measure(built).total <= size.total, source
    assert steps <= budget.max_steps * 1.5  # the bound of the whole is no less than its part's (buckets aside)


_VALUES = st.recursive(st.integers(0, 9) | st.text("ab", max_size=6),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text("kx", max_size=2), inner,
                                                                                       max_size=3),
                       max_leaves=20)


@st.composite
def _expressions(draw: st.DrawFn) -> str:
    leaves = st.sampled_from(["context.v", "context.l", "context.s", "[1, 2]", "'ab'", "context.m", "1"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"{{'k': {t[0]}, 'j': {t[1]}}}"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}).map(x, {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}).map(x, [x, x, {t[1]}])"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]}).map(x, x + x)"),
            inner.map(lambda e: f"({e}).filter(x, true)"),
            st.tuples(inner, inner, inner).map(lambda t: f"(size({t[0]}) > 1 ? {t[1]} : {t[2]})"),
            inner.map(lambda e: f"string({e})"), inner.map(lambda e: f"bytes({e})"),
            inner.map(lambda e: f"[{e}][0]"), inner.map(lambda e: f"{{'k': {e}}}.k"),
        )

    return draw(st.recursive(leaves, extend, max_leaves=6))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions(), st.fixed_dictionaries({"v": _VALUES, "l": st.lists(_VALUES, max_size=5),
                                              "s": st.text("xyz", max_size=30), "m": st.dictionaries(
                                                  st.text("ab", max_size=3), _VALUES, max_size=3)}))
def test_the_size_bound_holds_what_cel_builds(source: str, context: dict[str, Any]) -> None:
    variables = {"context": context}
    try:
        result = cel.compile(source).execute(cel.Context(variables))
    except Exception:
        return  # a type error (`int + list` …): nothing was built
    size, _ = bound(parse(source), measure(variables))
    assert measure(result).total <= size.total, source


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["all", "exists", "exists_one", "map", "filter"]), min_size=1, max_size=3),
       st.lists(st.sampled_from(["context.l", "context.m", "[outer]", "outer", "[context.l, context.l]"]),
                min_size=3, max_size=3),
       st.lists(st.integers(0, 9), max_size=12), st.dictionaries(st.text("ab", max_size=3), st.integers(), max_size=5))
def test_the_steps_bound_counts_every_iteration(macros: list[str], ranges: list[str], items: list[int],
                                                mapping: dict[str, int]) -> None:
    """A `tick()` at the top of every body counts the iterations `cel` really runs; the bound pays
    ITERATION_STEPS for each."""
    body = "tick(true)"
    for level, macro in enumerate(macros):  # from the innermost out
        outermost = level == len(macros) - 1
        over = "context.l" if outermost else ranges[level].replace("outer", f"n{level + 1}")
        body = f"({over}).{macro}(n{level}, {body})"
        if not outermost:
            body = f"tick({body})"
    ticks = 0

    def tick(value: Any) -> Any:
        nonlocal ticks
        ticks += 1
        return value

    variables = {"context": {"l": items, "m": mapping}}
    try:
        cel.compile(body).execute(cel.Context(variables, functions={"tick": tick}))
    except Exception:
        return  # a body of the wrong type (a list where a predicate is due …)
    _, steps = bound(parse(body), measure(variables))
    assert ticks * ITERATION_STEPS <= steps, body
