"""JSON Schema in words and tables: what a field holds, whether it is required, its limits. Used by the definition,
change-feed and HTTP API pages. `Link` turns a `$ref` into a Markdown link (or plain text)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tools.docs.markdown import cell, code, table, value

__all__ = ["Link", "kind", "limits", "properties_table", "variants"]

Link = Callable[[str], str]

_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "null": "null",
          "object": "object", "array": "array"}


def kind(schema: Any, link: Link) -> str:
    """What a value of `schema` is, in a few words: `string`, `array of [State](#state)`, `one of "a", "b"`."""
    if not isinstance(schema, dict) or not schema:
        return "any JSON"
    if "$ref" in schema:
        return link(schema["$ref"])
    if "const" in schema:
        return value(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(value(choice) for choice in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(kind(option, link) for option in schema[key]))
    types = schema.get("type")
    if isinstance(types, list):
        return " or ".join(_TYPES.get(str(t), str(t)) for t in types)
    if types == "array":
        return "array of " + kind(schema.get("items"), link)
    if types == "object" and isinstance(schema.get("additionalProperties"), dict) and "properties" not in schema:
        return "object of " + kind(schema["additionalProperties"], link)
    if types is None and "allOf" in schema:
        return "object (see below)"
    return _TYPES.get(types or "", "any JSON")


def limits(schema: Any) -> Iterator[str]:
    """The constraints of `schema` worth telling a reader, as short phrases."""
    if not isinstance(schema, dict):
        return
    options = [o for o in schema.get("anyOf", [schema]) if isinstance(o, dict) and o.get("type") != "null"]
    for option in options or [schema]:
        for key, words in (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
                           ("exclusiveMaximum", "< {}"), ("minLength", "at least {} characters"),
                           ("maxLength", "at most {} characters"), ("minItems", "at least {} items"),
                           ("maxItems", "at most {} items"), ("minProperties", "at least {} entries"),
                           ("maxProperties", "at most {} entries"), ("format", "format {}")):
            if key in option:
                number = option[key]
                phrase = words.format(f"{number:,}" if isinstance(number, int) else number)
                yield phrase.removesuffix("s") if number == 1 and words.endswith("s") else phrase
        if "pattern" in option:
            yield "matching " + code(option["pattern"])
    if "default" in schema and schema["default"] is not None:
        yield "default " + value(schema["default"])


def properties_table(schema: dict[str, Any], link: Link) -> str:
    """One row per property: name, what it holds, required, and its description with its limits."""
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        words = cell(prop.get("description") if isinstance(prop, dict) else None)
        extra = ", ".join(limits(prop))
        what = words + (f" ({extra})" if extra and words else extra)
        rows.append((code(name), cell(kind(prop, link)), "yes" if name in required else "", what))
    if not rows:
        return ""
    closed = schema.get("additionalProperties") is False
    note = "\nNo other field is allowed.\n" if closed else ""
    return table(["field", "value", "required", "what"], rows) + note


def variants(schema: dict[str, Any], link: Link) -> str:
    """`allOf: [{if: {type: const X}, then: Y}]`, the way a `type` field picks a shape: a list of X → Y."""
    lines = []
    for branch in schema.get("allOf", ()):
        chosen = branch.get("if", {}).get("properties", {})
        if len(chosen) == 1 and "then" in branch:
            (field, condition), = chosen.items()
            if "const" in condition:
                lines.append(f"- `{field}: {condition['const']}`: {kind(branch['then'], link)}")
    return "\n".join(lines) + "\n" if lines else ""
