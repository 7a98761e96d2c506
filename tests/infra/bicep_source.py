"""Reading Bicep with tree-sitter-bicep: syntax errors, parameters, outputs, and the Function app's settings.

tree-sitter-bicep 1.1.0 knows `using` but not the `param name = value` of a .bicepparam file; such a file is
read as the same text with each `param` turned into `var  ` (as long, so positions stay right): the values
are still parsed as Bicep expressions, so a typo in one is still an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

_PARSER = Parser(Language(tree_sitter_bicep.language()))
_BICEPPARAM_PARAM = re.compile(rb"^param(\s+[A-Za-z_][A-Za-z0-9_]*\s*=)", re.MULTILINE)


@dataclass(frozen=True)
class Param:
    name: str
    has_default: bool


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.kind} near {self.text!r}"


def parse(path: Path) -> Tree:
    source = path.read_bytes()
    if path.suffix == ".bicepparam":
        source = _BICEPPARAM_PARAM.sub(rb"var  \1", source)  # two spaces: "param" and "var  " are as long
    return _PARSER.parse(source)


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def problems(tree: Tree) -> list[Problem]:
    """Every ERROR and MISSING node, with where it is (1-based line and column)."""
    found = []
    for node in walk(tree.root_node):
        if node.is_error or node.is_missing:
            row, column = node.start_point
            kind = "ERROR" if node.is_error else f"MISSING {node.type}"
            found.append(Problem(row + 1, column + 1, kind, text(node)[:40]))
    return found


def text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def string_value(node: Node) -> str | None:
    """The value of a string literal without interpolation, else None."""
    if node.type != "string" or any(child.type == "interpolation" for child in node.children):
        return None
    return "".join(text(child) for child in node.children if child.type == "string_content")


def top_level(tree: Tree, kind: str) -> list[Node]:
    return [node for node in tree.root_node.children if node.type == kind]


def template_params(tree: Tree) -> dict[str, Param]:
    params = {}
    for node in top_level(tree, "parameter_declaration"):
        name = text(node.named_children[0])
        # identifier, type, then the default value if there is one
        params[name] = Param(name, has_default=len(node.named_children) > 2)
    return params


def bicepparam_values(tree: Tree) -> list[str]:
    """Names a .bicepparam file sets (read as `var` declarations, see the module docstring)."""
    return [text(node.named_children[0]) for node in top_level(tree, "variable_declaration")]


def using_target(tree: Tree) -> str | None:
    for node in top_level(tree, "using_statement"):
        for child in node.named_children:
            value = string_value(child)
            if value is not None:
                return value
    return None


def outputs(tree: Tree) -> list[str]:
    return [text(node.named_children[0]) for node in top_level(tree, "output_declaration")]


def properties(node: Node, key: str) -> Iterator[Node]:
    """The values of every `key: value` object property anywhere under `node`."""
    for candidate in walk(node):
        children = candidate.named_children
        if candidate.type == "object_property" and len(children) > 1 and text(children[0]) == key:
            yield children[-1]


def resources(tree: Tree) -> dict[str, tuple[str, Node]]:
    """symbolic name -> (type@api-version, declaration node)."""
    found = {}
    for node in top_level(tree, "resource_declaration"):
        name = text(node.named_children[0])
        resource_type = string_value(node.named_children[1]) or ""
        found[name] = (resource_type, node)
    return found


def app_setting_names(tree: Tree) -> list[str]:
    """The `name` of every entry of the `appSettings` arrays of the Microsoft.Web/sites resources."""
    names: list[str] = []
    for resource_type, node in resources(tree).values():
        if not resource_type.startswith("Microsoft.Web/sites@"):
            continue
        for array in properties(node, "appSettings"):
            assert array.type == "array", f"appSettings must be a literal array, not {array.type}"
            for entry in array.named_children:
                if entry.type != "object":
                    continue  # a comment
                [name_node] = list(properties(entry, "name"))
                value = string_value(name_node)
                assert value is not None, f"an app setting name must be a plain string: {text(name_node)}"
                names.append(value)
    return names
