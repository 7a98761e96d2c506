"""The CEL parser (engine/domain/cel_syntax.py) reads every expression as the `cel` evaluator does.

`cel` shows nothing of its tree but the names an expression reads (`Program.variables()`) and the functions it
calls (`Program.functions()`): generated expressions, with comments, whitespace and every form of string literal
between their tokens, must give the same names on both sides.
"""

from __future__ import annotations

import cel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.cel_syntax import (
    Call,
    CelSyntaxError,
    Comprehension,
    CreateMap,
    CreateStruct,
    Ident,
    Literal,
    Select,
    cel_variables,
    comprehension_depth,
    free_variables,
    functions,
    identifiers,
    parse,
)

# ------------------------------------------------------------------------------------------- examples


def test_precedence_and_associativity() -> None:
    tree = parse("a || b && c == d + e * -f")
    assert isinstance(tree, Call) and tree.function == "_||_"
    right = tree.args[1]
    assert isinstance(right, Call) and right.function == "_&&_"
    equality = right.args[1]
    assert isinstance(equality, Call) and equality.function == "_==_"
    addition = equality.args[1]
    assert isinstance(addition, Call) and addition.function == "_+_"
    product = addition.args[1]
    assert isinstance(product, Call) and product.function == "_*_"
    assert product.args[1] == Call("-_", (Ident("f", 24),), 23)
    left = parse("a - b - c")
    assert isinstance(left, Call) and isinstance(left.args[0], Call) and left.args[0].function == "_-_"


def test_the_conditional_nests_to_the_right() -> None:
    tree = parse("a ? b : c ? d : e")
    assert isinstance(tree, Call) and tree.function == "_?_:_"
    assert isinstance(tree.args[2], Call) and tree.args[2].function == "_?_:_"


@pytest.mark.parametrize(("source", "value", "kind"), [
    ("1", 1, "int"), ("-9223372036854775808", -9223372036854775808, "int"), ("0x1F", 31, "int"), ("7u", 7, "uint"),
    ("1.5e3", 1500.0, "double"), (".5", 0.5, "double"), ("true", True, "bool"), ("null", None, "null"),
    ('"a\\tb"', "a\tb", "string"), ("'\\x41\\u00e9\\101'", "Aé" + "A", "string"), ('r"a\\tb"', "a\\tb", "string"),
    ('"""two\nlines"""', "two\nlines", "string"), ("'''it's'''", "it's", "string"), ('b"\\x00"', b"\x00", "bytes"),
    ('br"\\x"', b"\\x", "bytes"),
])
def test_literals(source: str, value: object, kind: str) -> None:
    tree = parse(source)
    assert isinstance(tree, Literal) and (tree.value, tree.kind) == (value, kind)


def test_macros_are_comprehensions_and_has_is_a_test_only_selection() -> None:
    tree = parse("has(context.a.b) && context.items.map(x, x > 1, x * 2).size() > 0")
    assert isinstance(tree, Call)
    has = tree.args[0]
    assert isinstance(has, Select) and has.test_only and has.field == "b"
    size_call = tree.args[1]
    assert isinstance(size_call, Call)
    size = size_call.args[0]
    assert isinstance(size, Call) and size.function == "size"
    mapped = size.target
    assert isinstance(mapped, Comprehension) and mapped.macro == "map" and mapped.variable == "x"
    assert len(mapped.args) == 2
    # Not a macro: a wrong number of arguments, or a first argument that is not a name.
    assert isinstance(parse("a.map(x)"), Call)
    assert isinstance(parse("a.all(i, v, v)"), Call)


def test_a_comment_or_a_string_never_hides_or_forges_a_macro() -> None:
    hidden = "context.items.map//x\n(a, context.items.map // (\n (b, a + b))"
    assert comprehension_depth(parse(hidden)) == 2
    forged = "'x.map(y, ' + \"\"\"z.map(q,\n\"\"\" + r'\\' // .map(a, a.map(b, b))\n"
    assert comprehension_depth(parse(forged)) == 0


def test_maps_structs_and_lists() -> None:
    assert parse("[,]") == parse("[]") and parse("{,}") == parse("{}")  # an empty literal's lone comma, as in cel
    tree = parse("{'a': [1, 2,], 3: {}}")
    assert isinstance(tree, CreateMap) and len(tree.entries) == 2
    struct = parse("google.protobuf.Int64Value{value: 1,}")
    assert isinstance(struct, CreateStruct) and struct.type_name == "google.protobuf.Int64Value"


def test_free_variables_leave_out_what_a_macro_binds() -> None:
    tree = parse("context.items.map(context, context.x + trigger.y)")
    assert free_variables(tree) == {"context", "trigger"}
    assert identifiers(tree) == {"context", "trigger"}
    assert free_variables(parse("[1].all(x, x > 0)")) == set()


@pytest.mark.parametrize("source", [
    "1 +", "(1", "'open", "f(a,)", "{,1: 2}", "[1,,]", "'line\nbreak'", "a.", "has(a)", "1 ? 2", "{1: }", "a[1", "#", "'\\q'", "'''x''",
    "(" * 150 + "1" + ")" * 150, "-" * 300 + "1",
])
def test_malformed_sources_are_refused_with_a_position(source: str) -> None:
    with pytest.raises(CelSyntaxError, match=r"at character \d+"):
        parse(source)


# ------------------------------------------------------------------------------------------- generated

_NAMES = st.sampled_from(["context", "trigger", "instance", "x", "items", "a_1"])
_FIELDS = st.sampled_from(["items", "amount", "name", "map", "all", "size", "exists", "in_", "b"])
_STRING_BODIES = st.sampled_from(["", "map(", "//", ".map(a, a)", "it's", 'say "hi"', "a\\nb", "\\\\", "ü",
                                  "x.exists(y,", ") ("])


@st.composite
def _strings(draw: st.DrawFn) -> str:
    body = draw(_STRING_BODIES)
    form = draw(st.sampled_from(["'", '"', "'''", '"""', "r'", 'r"', "b'", "br'"]))
    quote = form.lstrip("rb")
    prefix = form[: len(form) - len(quote)]
    if "r" in prefix:
        body = body.replace("\\", "")
    if len(quote) == 1:
        body = body.replace(quote, "")
    elif "r" in prefix:
        body = body.replace(quote[0], "")
    return f"{prefix}{quote}{body}{quote}"


_GAPS = st.sampled_from([" ", "", "\n", "  ", " // note ( map(\n", "\t//)\n"])


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        _NAMES, _strings(), st.integers(0, 99).map(str), st.sampled_from(["1.5", "2u", "true", "null", "0x1f"]))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        gap = _GAPS
        return st.one_of(
            st.tuples(inner, gap, st.sampled_from(["+", "-", "*", "==", "<", "&&", "||", "in"]), gap, inner).map(
                lambda t: "".join(t)),
            st.tuples(inner, gap, _FIELDS).map(lambda t: f"{t[0]}{t[1]}.{t[2]}"),
            st.tuples(inner, gap, st.sampled_from(["map", "filter", "all", "exists", "exists_one"]), gap, _NAMES,
                      inner).map(lambda t: f"({t[0]}){t[1]}.{t[2]}{t[3]}({t[4]}, {t[5]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            st.tuples(inner, inner).map(lambda t: f"[{t[0]}, {t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
            inner.map(lambda e: f"size({e})"), inner.map(lambda e: f"!({e})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
            st.tuples(inner, _FIELDS).map(lambda t: f"has(({t[0]}).{t[1]})"),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions())
def test_the_parser_reads_the_names_cel_reads(source: str) -> None:
    try:
        program = cel.compile(source)
    except ValueError:
        return  # not CEL (the generator makes some `in` and `has` forms cel refuses)
    tree = parse(source)
    assert cel_variables(tree) == set(program.variables()), source
    mine = functions(tree) - {"-_"}
    theirs = set(program.functions()) - {"-_"}
    if not any(isinstance(node, Comprehension) for node in _nodes(tree)):
        assert mine == theirs, source
    else:  # a macro is expanded into calls of its own in `cel`
        assert mine <= theirs | {"size"}, source


def _nodes(tree: object) -> list[object]:
    from engine.domain.cel_syntax import walk

    return list(walk(tree))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", ".", "map", "(", ")", ",", "x", "'", '"', "//", "\n", "r", "b", "\\",
                                 "1", "+", "[", "]", "{", "}", ":", "?", "'''", " ", "has", "u", "e", "0x"]),
                max_size=14))
def test_whatever_cel_compiles_the_parser_reads_alike(pieces: list[str]) -> None:
    source = "".join(pieces)
    try:
        program = cel.compile(source)
    except Exception:
        return
    assert cel_variables(parse(source)) == set(program.variables()), source
