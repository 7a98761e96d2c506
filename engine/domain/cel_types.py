"""The type of a CEL expression, checked when a definition is uploaded, from its syntax tree (`cel_syntax`).

The variables an expression may read are declared here, with what is known of them:

    trigger    {id: string, topic: string, content: dyn}
    context    map(string, dyn)                the instance's context: any JSON, known only at run time
    instance   {id, workflowId, state, status: string; workflowVersion, version: int}

A type is known where the tree says it (a literal, an operator over known types, a declared field, a function
whose result type is fixed) and is `dyn` where only the run time knows (`context.amount`, `trigger.content.x`, a
list element). So `1 + 2` is an int, `context.amount > 0` a bool, `context.amount` dyn, and `1 + 'a'` an error.
What is refused on upload, with its path:

- a name that is not declared (`ctx.amount`, `trigger.topik`, `instance.owner`: a typo would fault at run time);
- an operator over types that never fit (`1 + 'a'`, `!5`, `'a' < 1`, `-'a'`);
- where a boolean is needed (a condition, `&&`, `||`, `!`, `?:`'s test, a macro's predicate), a type that is known
  and is not boolean (`1 + 2`, `context.name + '!'`, `size(context.items)`). `dyn` passes: the run time decides,
  and a non-boolean there still faults the instance (`TypeMismatch`).

Arithmetic follows CEL: no implicit conversion between int, uint and double (`1 + 2.0` is an error; write
`double(1) + 2.0`), `+` also joins strings, bytes and lists, and adds durations and timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

__all__ = ["BOOL", "DYN", "CelType", "CelTypeError", "check", "type_of"]


@dataclass(frozen=True)
class CelType:
    name: str  # bool, int, uint, double, string, bytes, null, list, map, timestamp, duration, type, dyn
    fields: tuple[tuple[str, CelType], ...] = ()  # a declared object's fields (trigger, instance)
    element: CelType | None = None  # a list's element type, when known

    def __str__(self) -> str:
        return self.name

    def field(self, name: str) -> CelType | None:
        return next((kind for key, kind in self.fields if key == name), None)


DYN, BOOL, INT, UINT, DOUBLE = CelType("dyn"), CelType("bool"), CelType("int"), CelType("uint"), CelType("double")
STRING, BYTES, NULL, MAP = CelType("string"), CelType("bytes"), CelType("null"), CelType("map")
TIMESTAMP, DURATION, TYPE = CelType("timestamp"), CelType("duration"), CelType("type")
LIST = CelType("list", element=DYN)
_NUMBERS = {"int", "uint", "double"}

TRIGGER = CelType("map", fields=(("id", STRING), ("topic", STRING), ("content", DYN)))
INSTANCE = CelType("map", fields=(("id", STRING), ("workflowId", STRING), ("workflowVersion", INT),
                                  ("state", STRING), ("status", STRING), ("version", INT)))
VARIABLES: dict[str, CelType] = {"trigger": TRIGGER, "context": MAP, "instance": INSTANCE}

# Functions whose result type does not depend on their arguments (cel-spec's standard definitions).
_RESULTS = {
    "size": INT, "int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bytes": BYTES, "bool": BOOL,
    "timestamp": TIMESTAMP, "duration": DURATION, "type": TYPE, "dyn": DYN,
    "contains": BOOL, "startsWith": BOOL, "endsWith": BOOL, "matches": BOOL,
    "getFullYear": INT, "getMonth": INT, "getDate": INT, "getDayOfMonth": INT, "getDayOfWeek": INT,
    "getDayOfYear": INT, "getHours": INT, "getMinutes": INT, "getSeconds": INT, "getMilliseconds": INT,
    "lowerAscii": STRING, "upperAscii": STRING, "trim": STRING, "replace": STRING, "substring": STRING,
    "indexOf": INT, "lastIndexOf": INT, "split": LIST, "join": STRING, "charAt": STRING,
}
_COMPARISONS = {"_<_", "_<=_", "_>_", "_>=_"}
_ARITHMETIC = {"_-_", "_*_", "_/_", "_%_"}


class CelTypeError(ValueError):
    """An expression whose types cannot work, whatever the data; `offset` is where in the source."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(message)


@dataclass
class _Scope:
    bound: dict[str, CelType] = field(default_factory=dict)  # comprehension variables

    def with_variable(self, name: str, kind: CelType) -> _Scope:
        return _Scope({**self.bound, name: kind})


def type_of(tree: Node) -> CelType:
    """The expression's type (`dyn` where only the run time knows). Raises CelTypeError."""
    return _infer(tree, _Scope())


def check(tree: Node, *, boolean: bool = False) -> CelType:
    """`type_of`, and with `boolean` refuse a result known not to be a boolean."""
    kind = type_of(tree)
    if boolean:
        _need_bool(kind, tree, "the condition")
    return kind


def _need_bool(kind: CelType, node: Node, what: str) -> None:
    if kind.name not in ("bool", "dyn"):
        raise CelTypeError(f"{what} gives {kind}, not a boolean", _offset(node))


def _offset(node: Node) -> int:
    return getattr(node, "offset", 0)


def _infer(node: Node, scope: _Scope) -> CelType:
    if isinstance(node, Literal):
        return {"int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bytes": BYTES, "bool": BOOL,
                "null": NULL}.get(node.kind, DYN)
    if isinstance(node, Ident):
        return _identifier(node, scope)
    if isinstance(node, Select):
        return _select(node, scope)
    if isinstance(node, CreateList):
        elements = [_infer(element, scope) for element in node.elements]
        same = {kind.name for kind in elements}
        return CelType("list", element=elements[0] if len(same) == 1 else DYN)
    if isinstance(node, CreateMap):
        for key, value in node.entries:
            _infer(key, scope)
            _infer(value, scope)
        return MAP
    if isinstance(node, CreateStruct):
        for _, value in node.fields:
            _infer(value, scope)
        return DYN
    if isinstance(node, Comprehension):
        return _comprehension(node, scope)
    return _call(node, scope)


def _identifier(node: Ident, scope: _Scope) -> CelType:
    if node.name in scope.bound:
        return scope.bound[node.name]
    if node.name in VARIABLES:
        return VARIABLES[node.name]
    if node.name in _TYPE_NAMES:
        return TYPE
    declared = ", ".join(sorted({*VARIABLES, *scope.bound}))
    raise CelTypeError(f"`{node.name}` is not declared (the expression may read {declared})", node.offset)


_TYPE_NAMES = {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type",
               "google.protobuf.Timestamp", "google.protobuf.Duration"}


def _select(node: Select, scope: _Scope) -> CelType:
    operand = _infer(node.operand, scope)
    if operand.fields:
        found = operand.field(node.field)
        if found is None:
            owner = node.operand.name if isinstance(node.operand, Ident) else "it"
            known = ", ".join(name for name, _ in operand.fields)
            raise CelTypeError(f"`{owner}` has no field `{node.field}` (it has {known})", node.offset)
        return BOOL if node.test_only else found
    if operand.name not in ("map", "dyn"):
        raise CelTypeError(f"{_a(operand)} has no fields (`.{node.field}`)", node.offset)
    return BOOL if node.test_only else DYN


def _comprehension(node: Comprehension, scope: _Scope) -> CelType:
    collection = _infer(node.range, scope)
    if collection.name not in ("list", "map", "dyn"):
        raise CelTypeError(f"{node.macro}() ranges over a list or a map, not {_a(collection)}", node.offset)
    element = (collection.element or DYN) if collection.name == "list" else DYN
    inner = scope.with_variable(node.variable, element)
    kinds = [_infer(arg, inner) for arg in node.args]
    predicates = kinds[:1] if node.macro != "map" else (kinds[:1] if len(kinds) == 2 else [])
    for kind, arg in zip(predicates, node.args, strict=False):
        _need_bool(kind, arg, f"the predicate of {node.macro}()")
    if node.macro in ("all", "exists", "exists_one"):
        return BOOL
    if node.macro == "map":
        return CelType("list", element=kinds[-1])
    return CelType("list", element=element)


def _call(node: Call, scope: _Scope) -> CelType:
    if node.target is not None:
        _infer(node.target, scope)  # checked (its names declared, its operators possible); methods are below
    args = [_infer(arg, scope) for arg in node.args]
    name = node.function
    if name in ("_&&_", "_||_"):
        for kind, arg in zip(args, node.args, strict=True):
            _need_bool(kind, arg, f"an operand of {name.strip('_')}")
        return BOOL
    if name == "!_":
        _need_bool(args[0], node.args[0], "the operand of !")
        return BOOL
    if name == "_?_:_":
        _need_bool(args[0], node.args[0], "the test of ?:")
        return args[1] if args[1] == args[2] else DYN
    if name in ("_==_", "_!=_", "@in"):
        return BOOL
    if name in _COMPARISONS:
        _comparable(args, node)
        return BOOL
    if name == "_+_":
        return _plus(args, node)
    if name in _ARITHMETIC:
        return _arithmetic(name, args, node)
    if name == "-_":
        if args[0].name not in (*_NUMBERS, "duration", "dyn") or args[0].name == "uint":
            raise CelTypeError(f"cannot negate {_a(args[0])}", node.offset)
        return args[0]
    if name == "_[_]":
        return _index(args, node)
    return _RESULTS.get(name, DYN)


def _a(kind: CelType) -> str:
    return f"an {kind}" if kind.name[0] in "aeiou" else f"a {kind}"


def _known(*kinds: CelType) -> bool:
    return all(kind.name != "dyn" for kind in kinds)


def _comparable(args: list[CelType], node: Call) -> None:
    left, right = args
    if not _known(left, right):
        return
    ordered = {*_NUMBERS, "string", "bytes", "bool", "timestamp", "duration"}
    numeric = left.name in _NUMBERS and right.name in _NUMBERS  # CEL compares numbers across kinds
    if left.name not in ordered or (left.name != right.name and not numeric):
        raise CelTypeError(f"cannot compare {_a(left)} with {_a(right)}", node.offset)


def _plus(args: list[CelType], node: Call) -> CelType:
    left, right = args
    if not _known(left, right):  # `+` never converts: where one side is known to be a number, a string, bytes or
        known = left if left.name != "dyn" else right  # a list, so is the result (or the run time faults)
        return LIST if known.name == "list" else known if known.name in (*_NUMBERS, "string", "bytes") else DYN
    if left.name == right.name and left.name in (*_NUMBERS, "string", "bytes", "list", "duration"):
        return left if left.name != "list" else LIST
    if {left.name, right.name} == {"timestamp", "duration"}:
        return TIMESTAMP
    raise CelTypeError(f"cannot add {_a(right)} to {_a(left)}", node.offset)


def _arithmetic(name: str, args: list[CelType], node: Call) -> CelType:
    left, right = args
    if not _known(left, right):
        known = left if left.name != "dyn" else right
        return known if known.name in _NUMBERS else DYN
    if name == "_-_" and left.name == "timestamp" and right.name in ("timestamp", "duration"):
        return DURATION if right.name == "timestamp" else TIMESTAMP
    if name == "_-_" and left.name == right.name == "duration":
        return DURATION
    if left.name == right.name and left.name in _NUMBERS and not (name == "_%_" and left.name == "double"):
        return left
    symbol = name.strip("_")
    raise CelTypeError(f"cannot compute {_a(left)} {symbol} {_a(right)}", node.offset)


def _index(args: list[CelType], node: Call) -> CelType:
    collection, key = args
    if collection.name == "list":
        if key.name not in ("int", "uint", "dyn"):
            raise CelTypeError(f"a list is indexed by an int, not {_a(key)}", node.offset)
        return collection.element or DYN
    if collection.fields and key.name == "string" and isinstance(node.args[1], Literal):
        found = collection.field(str(node.args[1].value))
        if found is None:
            raise CelTypeError(f"no field {node.args[1].value!r} here", node.offset)
        return found
    if collection.name in ("map", "dyn"):
        return DYN
    raise CelTypeError(f"{_a(collection)} cannot be indexed", node.offset)
