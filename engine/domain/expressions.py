"""CEL expressions, compiled once per definition version and evaluated per trigger.

The `cel` module (package `common-expression-language`) is a Rust-backed evaluator: ~25 µs
an evaluation here, against ~830 µs for the pure-Python implementation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

import cel
import orjson

from engine.domain.errors import ExpressionError

# An expression longer than this is refused when the definition is validated: a definition is
# data uploaded over HTTP, and the evaluator's cost grows with the program.
MAX_EXPRESSION_LENGTH = 4096


SCOPE_VARIABLES = frozenset({"trigger", "context", "instance"})

# CEL always terminates, but a comprehension over a list from the context runs once per element, and nested
# ones multiply: `context.items.map(a, context.items.map(b, …))` over 100,000 items would occupy the worker for
# minutes, and a running evaluation cannot be interrupted. So the cost of an evaluation is bounded before it
# starts: (largest list or map it can see) ** (depth of nested comprehensions) must stay under the budget, or the
# instance faults with `EvaluationBudgetExceeded`. Nesting deeper than MAX_COMPREHENSION_DEPTH is refused when
# the definition is validated.
MAX_COMPREHENSION_DEPTH = 3
# Each thread keeps, per expression, the CEL conversions of the last variable values it was handed (see
# `Expression.prepare`): conditions mostly read parts of the context that stay the same from trigger to trigger.
CONVERSION_CACHE_SIZE = 512
# orjson writes these as strings, which CEL would see as other values: such variables are not cached.
_KEY_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
EVALUATION_BUDGET = 1_000_000
_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_TOKENS = re.compile(r"""(?P<string>[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(\\.|[^'\\])*'|"(\\.|[^"\\])*"))"""
                     r"|(?P<macro>\.\s*(map|filter|all|exists|exists_one)\s*\()|(?P<open>\()|(?P<close>\))", re.S)


# The parts of `trigger`, `context` and `instance` an expression reads. Converting Python values to CEL costs more
# than most evaluations, so an expression that only reads `context.claimant` is handed a context holding only that
# key. A variable used in any other way (`size(context)`, `context[k]`, as a macro's variable …) is handed whole.
WHOLE: Any = None
_STRINGS = re.compile(r"""[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(\\.|[^'\\])*'|"(\\.|[^"\\])*")""", re.S)
_USE = re.compile(r"(?<![\w.])(trigger|context|instance)\b((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)")


def read_paths(source: str) -> dict[str, Any]:
    """Per scope variable the expression reads, a tree of the keys it follows ({key: subtree}), or WHOLE."""
    code = _STRINGS.sub(lambda m: " " * len(m.group(0)), source)
    trees: dict[str, Any] = {}
    for use in _USE.finditer(code):
        name, path = use.group(1), [part.strip() for part in use.group(2).split(".")[1:]]
        rest = code[use.end():].lstrip()
        if rest.startswith("("):  # `context.items.map(…)`, `context.name.startsWith(…)`: the receiver is read
            path = path[:-1]
        if not path or rest.startswith("[") or trees.get(name, {}) is WHOLE:
            trees[name] = WHOLE  # read whole or indexed: hand it over as it is
            continue
        node = trees.setdefault(name, {})
        for key in path[:-1]:
            child = node.get(key, {})
            if child is WHOLE:
                break
            node = node.setdefault(key, {})
        else:
            node[path[-1]] = WHOLE
    return trees


def pruned(value: Any, tree: Any) -> Any:
    """`value` with only the keys `tree` follows (all of it where the tree says WHOLE or `value` is no map)."""
    if tree is WHOLE or not isinstance(value, dict):
        return value
    return {key: pruned(value[key], sub) for key, sub in tree.items() if key in value}


def comprehension_depth(source: str) -> int:
    """How deeply comprehension macros (`map`, `filter`, `all`, `exists`, `exists_one`) nest in `source`."""
    stack: list[bool] = []  # one entry per open parenthesis: does it open a macro's arguments?
    deepest = 0
    for token in _TOKENS.finditer(source):
        if token.group("macro"):
            stack.append(True)
            deepest = max(deepest, sum(stack))
        elif token.group("open"):
            stack.append(False)
        elif token.group("close") and stack:
            stack.pop()
    return deepest


def largest_collection(value: Any, *, limit: int = EVALUATION_BUDGET) -> int:
    """The length of the longest list or map inside `value` (stops looking past `limit`)."""
    largest = 0
    todo = [value]
    seen = 0
    while todo and largest <= limit and seen <= 4 * limit:
        item = todo.pop()
        if isinstance(item, dict):
            largest = max(largest, len(item))
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            largest = max(largest, len(item))
            todo.extend(item)
        seen += 1
    return largest


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


class Expression:
    """A compiled CEL program over the variables `trigger`, `context` and `instance`."""

    __slots__ = ("_conversions", "_program", "depth", "paths", "source", "variables", "walk")

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
        # The top-level variables the program reads. Converting a Python value to CEL costs more than
        # evaluating a typical condition, so a scope hands each program only what it reads.
        self.variables = frozenset(self._program.variables()) & SCOPE_VARIABLES
        self.depth = comprehension_depth(source)
        reads = read_paths(source)
        self.paths = {name: reads.get(name, WHOLE) for name in self.variables}
        if self.depth > MAX_COMPREHENSION_DEPTH:
            raise CompileError(f"comprehensions (map, filter, all, exists) nest {self.depth} deep; at most "
                               f"{MAX_COMPREHENSION_DEPTH} are allowed")
        self._conversions = threading.local()
        self.walk = Walk.of(source)  # compiled above: a valid CEL expression

    def prepare(self, variables: dict[str, Any]) -> cel.Context:
        """`variables` converted to CEL, reused when the same values come again on this thread (converting is
        most of an evaluation's cost). Values are keyed by their JSON, so only JSON-like values are cached: a
        value JSON would write as a string (a datetime, a str subclass) is converted every time."""
        try:
            key = orjson.dumps(variables, option=_KEY_OPTIONS)
        except (orjson.JSONEncodeError, TypeError):
            return cel.Context(variables)
        cache: dict[bytes, cel.Context] | None = getattr(self._conversions, "cache", None)
        if cache is None:
            cache = self._conversions.cache = {}
        context = cache.get(key)
        if context is None:
            if len(cache) >= CONVERSION_CACHE_SIZE:
                cache.clear()
            context = cache[key] = cel.Context(variables)
        return context

    def check_budget(self, variables: Mapping[str, Any], *, where: str) -> None:
        """Fault, before it runs, an evaluation whose comprehensions could run longer than the budget allows."""
        if not self.depth:
            return
        largest = max((largest_collection(variables[name]) for name in self.variables if name in variables),
                      default=0)
        if largest ** self.depth > EVALUATION_BUDGET:
            raise ExpressionError(where, "EvaluationBudgetExceeded",
                                  f"comprehensions {self.depth} deep over a collection of {largest} items exceed "
                                  f"the budget of {EVALUATION_BUDGET:,} steps (in `{self.source}`)")

    def evaluate(self, activation: Mapping[str, Any] | cel.Context, *, where: str) -> Any:
        """Evaluate over a mapping of variables or a prepared `cel.Context` (whose conversion is cached)."""
        try:
            return self._program.execute(activation if isinstance(activation, cel.Context) else dict(activation))
        except Exception as e:
            detail = f"no such key: {e}" if isinstance(e, KeyError) else _first_line(str(e))
            raise ExpressionError(where, _error_type(e), f"{detail} (in `{self.source}`)") from e

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


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
