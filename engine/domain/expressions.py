"""CEL expressions, compiled once per definition version and evaluated per trigger, each within a budget.

The `cel` module (package `common-expression-language`) is a Rust-backed evaluator: ~20 µs an evaluation here,
against ~830 µs for the pure-Python implementation. An evaluation cannot be interrupted (it holds the GIL), so its
cost is bounded before it runs: `cel_syntax` parses the source, `cel_cost` bounds the steps the tree can take over
variables of the size at hand, and past `ExpressionBudget.max_steps` the instance faults with
`ExpressionBudgetExceeded` (naming the expression's path in the definition) without evaluating. An evaluation that
nevertheless ran longer than `max_seconds` (a slower machine, a cost the model missed) faults the same way once it
returns, so an instance can never repeat it.

`cel-expr-python` (the CEL C++ runtime's binding) was measured beside it (docs/tenants.md): 3 to 7 times
faster per evaluation, but its only limit is a fixed 10,000 comprehension iterations, which bounds neither time
(`map` is quadratic there too: 9,999 items take ~6 s) nor the growth of strings and lists, and it returns errors as
values; so the static bound is needed with either, and the evaluator stays the one every definition already runs
on.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cel
import orjson

from engine.domain import cel_syntax, cel_types
from engine.domain.cel_cost import Measure, bound, measure
from engine.domain.cel_syntax import CelSyntaxError, Comprehension, Ident, Node, Select
from engine.domain.errors import ExpressionBudgetExceeded, ExpressionError

# An expression longer than this is refused when the definition is validated: a definition is
# data uploaded over HTTP, and the evaluator's cost grows with the program.
MAX_EXPRESSION_LENGTH = 4096


SCOPE_VARIABLES = frozenset({"trigger", "context", "instance"})

# Comprehensions nesting deeper than this in one another's bodies are refused when the definition is validated (the
# cost model bounds each body twice, so its own work doubles with each level).
MAX_COMPREHENSION_DEPTH = 3
# Each thread keeps, per expression, the CEL conversions of the last variable values it was handed (see
# `Expression.prepare`): conditions mostly read parts of the context that stay the same from trigger to trigger.
CONVERSION_CACHE_SIZE = 512
# orjson writes these as strings, which CEL would see as other values: such variables are not cached.
_KEY_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
# Input sizes are rounded up to the next of these steps (2^¼ apart) so that an expression's bounds are computed once
# per step, not once per evaluation.
_SIZE_STEPS_PER_DOUBLING = 4


@dataclass(frozen=True, slots=True)
class ExpressionBudget:
    """What one evaluation may cost: `max_steps` as `cel_cost` counts them (checked before it runs; a step is about
    one element copied, 5-15 ns here), `max_seconds` of wall time (checked when it returns)."""

    max_steps: float = 20_000_000
    max_seconds: float = 2.0


DEFAULT_BUDGET = ExpressionBudget()


# The parts of `trigger`, `context` and `instance` an expression reads. Converting Python values to CEL costs more
# than most evaluations, so an expression that only reads `context.claimant` is handed a context holding only that
# key. A variable used in any other way (`size(context)`, `context[k]`, as a macro's range …) is handed whole.
WHOLE: Any = None


def read_paths(source: str | Node) -> dict[str, Any]:
    """Per scope variable the expression reads, a tree of the keys it follows ({key: subtree}), or WHOLE."""
    tree = cel_syntax.parse(source) if isinstance(source, str) else source
    trees: dict[str, Any] = {}
    for name, path in _reads(tree, frozenset()):
        if name not in SCOPE_VARIABLES:
            continue
        if not path or trees.get(name, {}) is WHOLE:
            trees[name] = WHOLE
            continue
        node = trees.setdefault(name, {})
        for key in path[:-1]:
            if node.get(key, {}) is WHOLE:
                break
            node = node.setdefault(key, {})
        else:
            node[path[-1]] = WHOLE
    return trees


def _reads(node: Node, bound_names: frozenset[str]) -> list[tuple[str, list[str]]]:
    """(variable, path of fields) for each chain of selections from a free variable; the value at the end of the
    path is read whole."""
    path: list[str] = []
    current: Node = node
    while isinstance(current, Select):
        path.append(current.field)
        current = current.operand
    if isinstance(current, Ident) and path:
        return [] if current.name in bound_names else [(current.name, path[::-1])]
    if isinstance(node, Ident):
        return [] if node.name in bound_names else [(node.name, [])]
    if isinstance(node, Comprehension):
        inner = bound_names | {node.variable}
        found = _reads(node.range, bound_names)
        for arg in node.args:
            found += _reads(arg, inner)
        return found
    return [read for child in cel_syntax.children(node) for read in _reads(child, bound_names)]


def pruned(value: Any, tree: Any) -> Any:
    """`value` with only the keys `tree` follows (all of it where the tree says WHOLE or `value` is no map)."""
    if tree is WHOLE or not isinstance(value, dict):
        return value
    return {key: pruned(value[key], sub) for key, sub in tree.items() if key in value}


class CompileError(ValueError):
    pass


# Most expressions of a definition are a member path (`trigger.content.amount`) or the presence test of one
# (`has(context.claimant)`). Such an expression is answered by walking the variables' maps — no conversion to CEL,
# which costs more than the evaluation — whenever the walk can tell what CEL would answer: each step a map holding
# the key, and a value a plain JSON scalar (or, for `has`, the last map holding the key or not). Anything else (a
# missing key, a list or map value, an integer beyond 64 bits) is left to CEL, its errors included.
_MEMBERS = r"(trigger|context|instance)((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+)"
_PATH = re.compile(rf"\s*{_MEMBERS}\s*")
_HAS = re.compile(rf"\s*has\s*\(\s*{_MEMBERS}\s*\)\s*")
UNANSWERED: Any = object()  # what a walk answers when CEL must
_INT64 = range(-(2 ** 63), 2 ** 63)


class Walk:
    """A member path or presence test, answered from the variables when that is certain (see above)."""

    __slots__ = ("index", "keys", "presence", "variable")

    def __init__(self, variable: str, keys: tuple[str, ...], presence: bool) -> None:
        self.variable, self.keys, self.presence = variable, keys, presence
        self.index = ("instance", "context", "trigger").index(variable)

    @classmethod
    def of(cls, source: str) -> Walk | None:
        for pattern, presence in ((_PATH, False), (_HAS, True)):
            match = pattern.fullmatch(source)
            if match:
                keys = tuple(key.strip() for key in match.group(2).split(".")[1:])
                return cls(match.group(1), keys, presence)
        return None

    def answer(self, instance: Any, context: Any, trigger: Any) -> Any:
        """The value (or presence) CEL would answer, or UNANSWERED."""
        node = (instance, context, trigger)[self.index]
        keys = self.keys
        for key in keys[:-1]:
            if type(node) is not dict or key not in node:
                return UNANSWERED
            node = node[key]
        if type(node) is not dict:
            return UNANSWERED
        last = keys[-1]
        if self.presence:
            return last in node
        if last not in node:
            return UNANSWERED
        value = node[last]
        kind = type(value)
        if kind is str or kind is float or kind is bool or value is None or (kind is int and value in _INT64):
            return value
        return UNANSWERED


class TypeCheckError(CompileError):
    """The expression compiles, but its types can never work (engine/domain/cel_types.py): an undeclared name, a
    field the declared variables do not have, an operator over types that never fit."""


def compile_problem(error: CompileError) -> str:
    """How a definition problem names an expression that was refused."""
    return f"does not type-check: {error}" if isinstance(error, TypeCheckError) else f"does not compile: {error}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """Variables converted to CEL, with their size as `cel_cost.measure` counts it."""

    context: cel.Context
    size: Measure


class Expression:
    """A compiled CEL program over the variables `trigger`, `context` and `instance`, and its syntax tree."""

    __slots__ = ("_bounds", "_conversions", "_program", "depth", "paths", "source", "tree", "type", "variables",
                 "walk")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source.strip():
            raise CompileError("an expression must be a non-empty string")
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise CompileError(f"an expression may be at most {MAX_EXPRESSION_LENGTH} characters")
        self.source = source
        try:
            self._program = cel.compile(source)
        except Exception as e:  # the binding raises ValueError, but a Rust panic surfaces as others
            raise CompileError(_first_line(str(e))) from e
        self.tree = _analysed(source, self._program)
        try:  # its type, as far as the tree tells (`dyn` where only the run time knows); never-working ones refused
            self.type = cel_types.type_of(self.tree)
        except cel_types.CelTypeError as e:
            raise TypeCheckError(f"{e} (at character {e.offset + 1})") from e
        # The top-level variables the program reads. Converting a Python value to CEL costs more than
        # evaluating a typical condition, so a scope hands each program only what it reads.
        self.variables = frozenset(cel_syntax.free_variables(self.tree)) & SCOPE_VARIABLES
        self.depth = cel_syntax.comprehension_depth(self.tree)
        if self.depth > MAX_COMPREHENSION_DEPTH:
            raise CompileError(f"comprehensions (map, filter, all, exists) nest {self.depth} deep; at most "
                               f"{MAX_COMPREHENSION_DEPTH} are allowed")
        reads = read_paths(self.tree)
        self.paths = {name: reads.get(name, WHOLE) for name in self.variables}
        self._bounds: dict[tuple[int, int], float] = {}
        self._conversions = threading.local()
        least = self.steps_for(Measure(1, 1))
        if least > DEFAULT_BUDGET.max_steps:
            raise CompileError(f"it could take {least:.3g} steps even over empty variables, more than the "
                               f"{DEFAULT_BUDGET.max_steps:,.0f} an evaluation may take")
        self.walk = Walk.of(source)  # compiled above: a valid CEL expression

    def steps_for(self, size: Measure) -> float:
        """The most steps an evaluation over variables of `size` (each number rounded up to a power of 2^¼) can
        take."""
        key = (_rounded_up(size.total), _rounded_up(size.longest))
        steps = self._bounds.get(key)
        if steps is None:
            rounded = Measure(*(math.ceil(2 ** (exponent / _SIZE_STEPS_PER_DOUBLING)) for exponent in key))
            steps = self._bounds[key] = bound(self.tree, rounded)[1]
        return steps

    def prepare(self, variables: dict[str, Any]) -> Prepared:
        """`variables` converted to CEL, reused when the same values come again on this thread (converting is
        most of an evaluation's cost). Values are keyed by their JSON, so only JSON-like values are cached: a
        value JSON would write as a string (a datetime, a str subclass) is converted every time."""
        try:
            key = orjson.dumps(variables, option=_KEY_OPTIONS)
        except (orjson.JSONEncodeError, TypeError):
            return Prepared(cel.Context(variables), measure(variables))
        cache: dict[bytes, Prepared] | None = getattr(self._conversions, "cache", None)
        if cache is None:
            cache = self._conversions.cache = {}
        prepared = cache.get(key)
        if prepared is None:
            if len(cache) >= CONVERSION_CACHE_SIZE:
                cache.clear()
            prepared = cache[key] = Prepared(cel.Context(variables), measure(variables))
        return prepared

    def check_budget(self, size: Measure, budget: ExpressionBudget, *, where: str) -> None:
        """Fault, before it runs, an evaluation over variables of `size` that could take more than the budget."""
        steps = self.steps_for(size)
        if steps > budget.max_steps:
            raise ExpressionBudgetExceeded(
                where, f"`{_shortened(self.source)}` could take up to {steps:.3g} steps over variables of total size "
                       f"{size.total:,} (longest list {size.longest:,}), more than the {budget.max_steps:,.0f} an "
                       "evaluation may take; it was not evaluated")

    def evaluate(self, activation: Mapping[str, Any] | Prepared, *, where: str,
                 budget: ExpressionBudget = DEFAULT_BUDGET, clock: Callable[[], float] | None = None) -> Any:
        """Evaluate over a mapping of variables or a `Prepared` one (whose conversion is cached), within `budget`:
        its steps are checked before, its seconds after (with `clock`, a monotonic clock, when given)."""
        if not isinstance(activation, Prepared):
            variables = dict(activation)
            activation = Prepared(cel.Context(variables), measure(variables))
        self.check_budget(activation.size, budget, where=where)
        started = clock() if clock is not None else 0.0
        try:
            result = self._program.execute(activation.context)
        except Exception as e:
            detail = f"no such key: {e}" if isinstance(e, KeyError) else _first_line(str(e))
            raise ExpressionError(where, _error_type(e), f"{detail} (in `{self.source}`)") from e
        if clock is not None and (elapsed := clock() - started) > budget.max_seconds:
            raise ExpressionBudgetExceeded(
                where, f"`{_shortened(self.source)}` ran {elapsed:.1f} s, more than the {budget.max_seconds:g} s an "
                       "evaluation may take")
        return result

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _analysed(source: str, program: cel.Program) -> Node:
    """The syntax tree of a source `cel` compiled; refused if this parser reads it otherwise than `cel` does (the
    names they find differ), since its cost could not be bounded then."""
    try:
        tree = cel_syntax.parse(source)
    except CelSyntaxError as e:
        raise CompileError(f"it cannot be analysed: {e}") from e
    if cel_syntax.cel_variables(tree) != set(program.variables()):
        raise CompileError("it cannot be analysed: the names it reads are ambiguous")
    return tree


def _rounded_up(number: int) -> int:
    """The exponent of the power of 2^¼ at or above `number` (at least 16)."""
    return math.ceil(math.log2(max(number, 16)) * _SIZE_STEPS_PER_DOUBLING)


def _shortened(source: str, limit: int = 200) -> str:
    return source if len(source) <= limit else source[:limit] + "…"


def _error_type(e: Exception) -> str:
    return {
        "ZeroDivisionError": "DivisionByZero",
        "KeyError": "NoSuchField",
        "TypeError": "TypeMismatch",
        "OverflowError": "Overflow",
    }.get(type(e).__name__, "ExpressionError")


def _first_line(text: str) -> str:
    text = text.strip().strip("'\"")
    return text.splitlines()[0] if text else "evaluation failed"
