"""An upper bound on what evaluating a CEL expression can cost, from its syntax tree and the size of its input.

An evaluation cannot be interrupted (the evaluator holds the GIL until it returns), so its cost is bounded
before it starts. The bound is in **steps**: one per node evaluated, per comprehension iteration, and per
element or character a value holds when it is built, copied or compared. It is computed from the tree
(`cel_syntax`) and the `measure` of the variables handed to the evaluation: their total size (a scalar counts 1, a
string its length, a list or map its length plus its elements') and their longest list or map.

Each node's bound is a `Size` (its length and its total size) and a number of steps, derived from its children:

- reading a variable, a field or an element copies it (the `cel` evaluator clones values): its total;
- `a + b` builds a value of both lengths and both totals; comparisons and `in` may walk both operands;
- `matches` may cost the product of the text and the pattern; conversions and unknown functions their input;
- a comprehension iteration costs `ITERATION_STEPS`, and runs its body once per element: with elements of totals
  t1 … tn (their sum at most T), and a body whose bound f(t) only adds and multiplies increasing terms (so is
  convex), the sum of f(ti) is at most f(T) + (n - 1)·f(1): the body is bounded twice, once for an element as
  large as the whole range and once for a smallest one (each as long as the longest list inside the range).
  `map` and `filter` copy their accumulated result at every step in `cel` (measured: a `map` over 8,000 numbers
  takes 3 s), so they add n·(their result's total).
- strings and lists can double at every level of a chain (`[s].map(a, a + a).map(a, a + a)…`): the sizes carry
  that growth, and the steps pay for it.

Soundness rests on the rules above being at least what `cel` does; `tests/unit/test_expression_cost.py` checks
the size bounds against real results, and docs/tenants.md reports measured seconds per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.domain.cel_syntax import (
    Call,
    Comprehension,
    CreateList,
    CreateMap,
    CreateStruct,
    Ident,
    Literal,
    Node,
    Select,
)

__all__ = ["ITERATION_STEPS", "Measure", "Size", "bound", "measure"]

# What one comprehension iteration costs in `cel`, in steps (a step being about one element copied: measured ~40 ns
# for both, ~500 ns for an iteration).
ITERATION_STEPS = 12.0

# Functions whose result is one scalar whatever their input (after reading it once).
_SCALAR_RESULT = frozenset({
    "size", "int", "uint", "double", "bool", "type", "duration", "timestamp", "contains", "startsWith", "endsWith",
    "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours",
    "getMinutes", "getSeconds", "getMilliseconds",
})
_ARITHMETIC = frozenset({"_-_", "_*_", "_/_", "_%_", "-_", "!_", "_&&_", "_||_"})
_COMPARISONS = frozenset({"_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "@in"})
_PRINTED = 32.0  # characters a number, a timestamp or a duration takes as a string


@dataclass(frozen=True, slots=True)
class Size:
    """A bound on a value: its `length` (elements or entries of a list or a map; meaningless for anything else),
    its `total` size (1 for a scalar, the characters of a string, a list's or map's length plus its elements' (keys'
    and values') totals) and the `longest` list or map anywhere inside it (itself included)."""

    length: float
    total: float
    longest: float


@dataclass(frozen=True, slots=True)
class Measure:
    """The size of actual variables: their `total` (as `Size.total` counts it) and their `longest` list or map."""

    total: int
    longest: int


_SCALAR = Size(1.0, 1.0, 1.0)


def bound(node: Node, size: Measure) -> tuple[Size, float]:
    """The size of what `node` evaluates to and the steps it takes, over variables of at most `size`."""
    total = max(float(size.total), 1.0)
    longest = min(max(float(size.longest), 1.0), total)
    return _Bounds(Size(longest, total, longest)).of(node, {})


def measure(value: Any) -> Measure:
    """The total size and the longest list or map of a Python value, as `Size` counts them."""
    total = longest = 0
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str | bytes):
            total += max(len(item), 1)
        elif isinstance(item, dict):
            total += max(len(item), 1)
            longest = max(longest, len(item))
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            total += max(len(item), 1)
            longest = max(longest, len(item))
            todo.extend(item)
        else:
            total += 1
    return Measure(total, longest)


class _Bounds:
    def __init__(self, variables: Size) -> None:
        self.input = variables

    def of(self, node: Node, scope: dict[str, Size]) -> tuple[Size, float]:
        if isinstance(node, Literal):
            if node.kind in ("string", "bytes"):
                return Size(1.0, float(max(len(node.value), 1)), 1.0), 1.0
            return _SCALAR, 1.0
        if isinstance(node, Ident):
            size = scope.get(node.name, self.input)
            return size, 1.0 + size.total
        if isinstance(node, Select):
            operand, steps = self.of(node.operand, scope)
            if node.test_only:
                return _SCALAR, steps + 1.0
            field = _part_of(operand)
            return field, steps + 1.0 + field.total
        if isinstance(node, CreateList | CreateMap | CreateStruct):
            return self.collection(node, scope)
        if isinstance(node, Comprehension):
            return self.comprehension(node, scope)
        return self.call(node, scope)

    def collection(self, node: CreateList | CreateMap | CreateStruct, scope: dict[str, Size]) -> tuple[Size, float]:
        if isinstance(node, CreateList):
            parts = [self.of(element, scope) for element in node.elements]
            length = len(node.elements)
        elif isinstance(node, CreateMap):
            parts = [self.of(part, scope) for entry in node.entries for part in entry]
            length = len(node.entries)
        else:
            parts = [self.of(value, scope) for _, value in node.fields]
            parts += [(Size(1.0, len(name), 1.0), 1.0) for name, _ in node.fields]
            length = len(node.fields)
        total = max(length + sum(size.total for size, _ in parts), 1.0)
        longest = max([float(length), *(size.longest for size, _ in parts)])
        return Size(float(max(length, 1)), total, max(longest, 1.0)), 1.0 + sum(steps for _, steps in parts) + total

    def call(self, node: Call, scope: dict[str, Size]) -> tuple[Size, float]:
        parts = [self.of(arg, scope) for arg in (node.args if node.target is None else (node.target, *node.args))]
        sizes = [size for size, _ in parts]
        steps = 1.0 + sum(each for _, each in parts)
        name = node.function
        if name in _ARITHMETIC:
            return _SCALAR, steps
        if name in _COMPARISONS or name in _SCALAR_RESULT:
            return _SCALAR, steps + sum(size.total for size in sizes)
        if name == "matches" and len(sizes) == 2:
            return _SCALAR, steps + sizes[0].total * sizes[1].total + sizes[1].total
        if name == "_+_" and len(sizes) == 2:
            a, b = sizes
            length = a.length + b.length
            joined = Size(length, a.total + b.total, max(a.longest, b.longest, length))
            return joined, steps + joined.total
        if name == "_?_:_" and len(sizes) == 3:
            a, b = sizes[1:]
            return Size(max(a.length, b.length), max(a.total, b.total), max(a.longest, b.longest)), steps
        if name == "_[_]" and len(sizes) == 2:
            element = _part_of(sizes[0])
            return element, steps + element.total
        if name == "dyn" and len(sizes) == 1:
            return sizes[0], steps + sizes[0].total
        # string(), bytes() and any other function: a result as large as all its input (and the printed form of a
        # scalar), at most 4 bytes a character.
        total = 4.0 * (sum(size.total for size in sizes) + _PRINTED)
        return Size(total, total, total), steps + total

    def comprehension(self, node: Comprehension, scope: dict[str, Size]) -> tuple[Size, float]:
        """The body is bounded for one element as large as the whole range and for the others as small as can be
        in total but as long as the longest list inside (a bound that only grows with an element's length is
        largest there, whatever the elements' lengths)."""
        over, steps = self.of(node.range, scope)
        count, whole, longest = over.length, over.total, over.longest
        largest = [self.of(arg, {**scope, node.variable: Size(longest, whole, longest)}) for arg in node.args]
        smallest = [self.of(arg, {**scope, node.variable: Size(longest, 1.0, longest)}) for arg in node.args]
        others = max(count - 1.0, 0.0)
        bodies = sum(big + others * small for (_, big), (_, small) in zip(largest, smallest, strict=True))
        steps += count * ITERATION_STEPS + bodies
        if node.macro == "map":
            big, small = largest[-1][0], smallest[-1][0]
            built = Size(count, count + big.total + others * small.total, max(count, big.longest, small.longest))
            return built, steps + count * built.total
        if node.macro == "filter":
            kept = Size(count, whole, longest)
            return kept, steps + count * kept.total
        return _SCALAR, steps


def _part_of(value: Size) -> Size:
    """A field, an entry or an element of `value`."""
    return Size(value.longest, value.total, value.longest)

