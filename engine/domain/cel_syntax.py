"""The syntax tree of a CEL expression, parsed from its source (cel-spec `langdef.md`).

The `cel` evaluator compiles an expression but shows nothing of its structure, and what Waymark must know before
running one (which variables and paths it reads, how its comprehensions nest, what it could cost) needs that
structure: a regular expression over the text is fooled by a comment or a string. So this module parses the
source itself into the tree below. It is a plain Pratt parser over `cel_lexer`'s tokens, with CEL's precedence:

    ?:  <  ||  <  &&  <  == != < <= > >= in  <  + -  <  * / %  <  ! - (prefix)  <  . [] () (member)

Nodes are frozen dataclasses, each with `offset` (where it starts in the source). Operators are `Call`s named as
cel-spec names them (`_+_`, `_&&_`, `!_`, `-_`, `_[_]`, `_?_:_`, `@in` …). Macros stay macros: `has(a.b)` is a
`Select` with `test_only`; `r.all(x, p)`, `r.exists(x, p)`, `r.exists_one(x, p)`, `r.map(x, t)`,
`r.map(x, p, t)` and `r.filter(x, p)` are `Comprehension`s.

    parse(source) -> Node            raises CelSyntaxError
    walk(node) -> Iterator[Node]     every node, parents first
    identifiers(node) -> set[str]    every name read (comprehension variables included)
    cel_variables(node) -> set[str]  the names `cel`'s Program.variables() lists for the same source
    functions(node) -> set[str]      every function and operator called
    free_variables(node) -> set[str] identifiers not bound by a comprehension around them
    comprehension_depth(node) -> int how deeply comprehensions nest in one another's bodies
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.domain.cel_lexer import CelSyntaxError, Kind, Token, tokenize

__all__ = [
    "MACROS",
    "Call",
    "CelSyntaxError",
    "Comprehension",
    "CreateList",
    "CreateMap",
    "CreateStruct",
    "Ident",
    "Literal",
    "Node",
    "Select",
    "cel_variables",
    "children",
    "comprehension_depth",
    "free_variables",
    "functions",
    "identifiers",
    "parse",
    "walk",
]

# A macro's name and the numbers of arguments that make a call of it a comprehension.
MACROS = {"all": (2,), "exists": (2,), "exists_one": (2,), "map": (2, 3), "filter": (2,)}
MAX_NESTING = 100  # of parentheses, brackets, operators and macros: beyond it the source is refused, not recursed into


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    kind: str  # int, uint, double, string, bytes, bool, null
    offset: int
    source_length: int = 1


@dataclass(frozen=True, slots=True)
class Ident:
    name: str
    offset: int


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str
    offset: int
    test_only: bool = False  # `has(operand.field)`


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Node, ...]
    offset: int
    target: Node | None = None  # the receiver of a member call (`target.function(args)`)


@dataclass(frozen=True, slots=True)
class CreateList:
    elements: tuple[Node, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class CreateMap:
    entries: tuple[tuple[Node, Node], ...]
    offset: int


@dataclass(frozen=True, slots=True)
class CreateStruct:
    type_name: str
    fields: tuple[tuple[str, Node], ...]
    offset: int


@dataclass(frozen=True, slots=True)
class Comprehension:
    macro: str  # all, exists, exists_one, map, filter
    range: Node
    variable: str
    args: tuple[Node, ...]  # the predicate and/or transform, in source order
    offset: int


Node = Literal | Ident | Select | Call | CreateList | CreateMap | CreateStruct | Comprehension


def parse(source: str) -> Node:
    return _Parser(tokenize(source)).expression_only()


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Select):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args if node.target is None else (node.target, *node.args)
    if isinstance(node, CreateList):
        return node.elements
    if isinstance(node, CreateMap):
        return tuple(part for entry in node.entries for part in entry)
    if isinstance(node, CreateStruct):
        return tuple(value for _, value in node.fields)
    if isinstance(node, Comprehension):
        return (node.range, *node.args)
    return ()


def walk(node: Node) -> Iterator[Node]:
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(reversed(children(current)))


def identifiers(node: Node) -> set[str]:
    return {each.name for each in walk(node) if isinstance(each, Ident)}


def cel_variables(node: Node) -> set[str]:
    """What the `cel` evaluator's `Program.variables()` lists: the names read, and the variable of each `filter`
    (its expansion reads it)."""
    return identifiers(node) | {each.variable for each in walk(node)
                                if isinstance(each, Comprehension) and each.macro == "filter"}


def functions(node: Node) -> set[str]:
    """The names of the functions and operators called (macros are not functions)."""
    return {each.function for each in walk(node) if isinstance(each, Call)}


def free_variables(node: Node, bound: frozenset[str] = frozenset()) -> set[str]:
    if isinstance(node, Ident):
        return set() if node.name in bound else {node.name}
    if isinstance(node, Comprehension):
        inner = bound | {node.variable}
        found = free_variables(node.range, bound)
        for arg in node.args:
            found |= free_variables(arg, inner)
        return found
    found = set()
    for child in children(node):
        found |= free_variables(child, bound)
    return found


def comprehension_depth(node: Node) -> int:
    """1 for a comprehension whose body holds none, 2 for one holding one … (chained ones do not nest)."""
    if isinstance(node, Comprehension):
        return max(comprehension_depth(node.range), 1 + max(comprehension_depth(arg) for arg in node.args))
    return max((comprehension_depth(child) for child in children(node)), default=0)


# ---------------------------------------------------------------------------------------------- the parser

_BINARY = {"||": 2, "&&": 3, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "in": 4, "+": 5, "-": 5,
           "*": 6, "/": 6, "%": 6}
_TERNARY = 1


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    # -------------------------------------------------------------------------------------- tokens

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def at(self, text: str) -> bool:
        token = self.token
        return token.kind in (Kind.PUNCT, Kind.IDENT) and token.text == text

    def take(self) -> Token:
        token = self.token
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected {text!r}")
        return self.take()

    def error(self, message: str) -> CelSyntaxError:
        token = self.token
        found = "the end" if token.kind is Kind.END else repr(token.text)
        return CelSyntaxError(f"{message}, found {found}", token.offset)

    # -------------------------------------------------------------------------------------- grammar

    def expression_only(self) -> Node:
        node = self.expression()
        if self.token.kind is not Kind.END:
            raise self.error("expected the end of the expression")
        return node

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CelSyntaxError(f"the expression nests more than {MAX_NESTING} deep", self.token.offset)

    def expression(self, floor: int = 0) -> Node:
        self.deeper()
        node = self.unary()
        while True:
            token = self.token
            if token.kind is Kind.PUNCT and token.text == "?" and floor <= _TERNARY:
                self.take()
                yes = self.expression(_TERNARY + 1)
                self.expect(":")
                node = Call("_?_:_", (node, yes, self.expression(_TERNARY)), token.offset)
                continue
            power = _BINARY.get(token.text) if token.kind in (Kind.PUNCT, Kind.IDENT) else None
            if power is None or power < floor:
                break
            self.take()
            right = self.expression(power + 1)
            name = "@in" if token.text == "in" else f"_{token.text}_"
            node = Call(name, (node, right), token.offset)
        self.depth -= 1
        return node

    def unary(self) -> Node:
        token = self.token
        if token.kind is Kind.PUNCT and token.text in ("!", "-"):
            self.take()
            if token.text == "-" and self.token.kind in (Kind.INT, Kind.DOUBLE):
                follower = self.tokens[self.index + 1]
                if not (follower.kind is Kind.PUNCT and follower.text in (".", "[")):
                    return self.postfix(self.literal(negative=True, offset=token.offset))
            self.deeper()
            operand = self.unary()
            self.depth -= 1
            return Call(f"{token.text}_", (operand,), token.offset)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.token
            if self.at("."):
                self.take()
                name = self.identifier()
                node = self.member_call(node, name, token.offset) if self.at("(") else Select(node, name, token.offset)
            elif self.at("["):
                self.take()
                index = self.expression()
                self.expect("]")
                node = Call("_[_]", (node, index), token.offset)
            elif self.at("{") and _qualified_name(node) is not None:
                node = self.struct(node)
            else:
                return node

    def primary(self) -> Node:
        token = self.token
        if token.kind in (Kind.INT, Kind.UINT, Kind.DOUBLE, Kind.STRING, Kind.BYTES):
            return self.literal()
        if token.kind is Kind.IDENT:
            return self.name()
        if self.at("."):
            self.take()
            return self.name(leading_dot=True)
        if self.at("("):
            self.take()
            node = self.expression()
            self.expect(")")
            return node
        if self.at("["):
            self.take()
            self.lone_comma("]")
            elements = self.items("]")
            return CreateList(tuple(elements), token.offset)
        if self.at("{"):
            self.take()
            self.lone_comma("}")
            entries = []
            while not self.at("}"):
                key = self.expression()
                self.expect(":")
                entries.append((key, self.expression()))
                if not self.at(","):
                    break
                self.take()
            self.expect("}")
            return CreateMap(tuple(entries), token.offset)
        raise self.error("expected a value")

    def name(self, *, leading_dot: bool = False) -> Node:
        token = self.token
        name = self.identifier()
        constants = {"true": (True, "bool"), "false": (False, "bool"), "null": (None, "null")}
        if not leading_dot and name in constants:
            value, kind = constants[name]
            return Literal(value, kind, token.offset, len(name))
        if self.at("("):
            self.take()
            args = tuple(self.items(")", trailing_comma=False))
            if name == "has" and not leading_dot and len(args) == 1:  # other counts: a call (of nothing)
                if not isinstance(args[0], Select):
                    raise CelSyntaxError("has() takes one field selection, like has(a.b)", token.offset)
                return Select(args[0].operand, args[0].field, args[0].offset, test_only=True)
            return Call(("." if leading_dot else "") + name, args, token.offset)
        return Ident(("." if leading_dot else "") + name, token.offset)

    def member_call(self, target: Node, name: str, offset: int) -> Node:
        self.expect("(")
        args = tuple(self.items(")", trailing_comma=False))
        if name in MACROS and len(args) in MACROS[name] and isinstance(args[0], Ident):
            return Comprehension(name, target, args[0].name, args[1:], offset)
        return Call(name, args, offset, target)

    def struct(self, type_node: Node) -> Node:
        self.expect("{")
        self.lone_comma("}")
        fields = []
        while not self.at("}"):
            field = self.identifier()
            self.expect(":")
            fields.append((field, self.expression()))
            if not self.at(","):
                break
            self.take()
        self.expect("}")
        name = _qualified_name(type_node)
        assert name is not None
        return CreateStruct(name, tuple(fields), type_node.offset)

    def lone_comma(self, closing: str) -> None:
        """`[,]`, `{,}` and `T{,}`: an empty literal may hold a trailing comma alone, as `cel` allows."""
        following = self.tokens[self.index + 1]
        if self.at(",") and following.kind is Kind.PUNCT and following.text == closing:
            self.take()

    def items(self, closing: str, *, trailing_comma: bool = True) -> list[Node]:
        """A comma-separated list of expressions up to `closing`, `closing` taken. A list literal may end with a
        comma; a call's arguments may not."""
        found: list[Node] = []
        while not self.at(closing) or (found and not trailing_comma):
            found.append(self.expression())
            if not self.at(","):
                break
            self.take()
        self.expect(closing)
        return found

    def identifier(self) -> str:
        if self.token.kind is not Kind.IDENT:
            raise self.error("expected a name")
        return self.take().text

    def literal(self, *, negative: bool = False, offset: int | None = None) -> Literal:
        token = self.take()
        start = token.offset if offset is None else offset
        length = token.raw_length + (token.offset - start)
        if token.kind in (Kind.STRING, Kind.BYTES):
            value: Any = token.text.encode("utf-8") if token.kind is Kind.BYTES else token.text
            return Literal(value, token.kind.value, start, length)
        text = token.text.rstrip("uU")
        if token.kind is Kind.DOUBLE:
            number: Any = float(text)
        else:
            number = int(text, 16) if text.lower().startswith("0x") else int(text)
        return Literal(-number if negative else number, token.kind.value, start, length)


def _qualified_name(node: Node) -> str | None:
    """`a.b.C` of a struct literal's type, when `node` is only names and selections of names."""
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Select) and not node.test_only:
        prefix = _qualified_name(node.operand)
        return None if prefix is None else f"{prefix}.{node.field}"
    return None
