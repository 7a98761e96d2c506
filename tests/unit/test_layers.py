"""The layers of docs/architecture.md, checked over the real import graph of engine/ and function_app.py.

Every `import` and `from … import` counts, wherever it stands (top level, inside a function, under
`TYPE_CHECKING`): an import deferred to break a cycle is still a dependency, and the rules are about dependencies.
A module's parent packages are not counted as its imports (Python runs a package's `__init__` before any of its
modules: that is how packages work, not a choice of the module).

The rules:

- dependencies point down the layers (LAYERS): a module imports only modules of its own layer or below;
- the domain imports nothing outward: of other packages, only the standard library and the two it computes with
  (`cel`, `orjson`); the use cases and the edges reach no driver (`sqlite3`, `azure.*`) but through a port;
- no import cycles between the modules of engine/;
- a private module (`_name.py`) is imported only from its own package;
- every module of engine/ is in a package that LAYERS places (no module stands at engine/ root beside the
  layers, and a new package must say where it goes), and docs/architecture.md names every package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module may import modules of its own layer and of the layers before it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("domain", ("engine.domain",)),
    ("contracts", ("engine.schemas",)),
    ("drivers", ("engine.drivers",)),
    ("ports and adapters", ("engine.stores", "engine.queues", "engine.feed", "engine.tenants", "engine.outbound")),
    ("use cases", ("engine.service",)),
    ("edges", ("engine.api", "engine.ui")),
    ("hosts", ("engine.hosting",)),
    ("entry points", ("engine.cli", "engine.bench", "function_app")),
)
# `engine` itself holds only `__version__`, which any layer may read.
ANYWHERE = frozenset({"engine"})
DOMAIN_MAY_USE = frozenset({"cel", "orjson"})
DRIVERS = ("sqlite3", "azure")
NO_DRIVERS = ("engine.domain", "engine.schemas", "engine.service", "engine.api", "engine.ui")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports: a module of ours, or the top-level name of another package
    line: int


def _modules() -> dict[str, Path]:
    found = {"function_app": ROOT / "function_app.py"}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1
        package = _package_of(module).split(".")
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in MODULES else base


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node):
                    name = target if target in MODULES else target.split(".")[0]
                    if name != module and name != "__future__":
                        found.append(Import(module, name, node.lineno))
    return tuple(found)


def _where(item: Import) -> str:
    return f"{MODULES[item.module].relative_to(ROOT)}:{item.line}"


def _layer(module: str) -> int | None:
    for rank, (_, packages) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return rank
    return None


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(m for m in MODULES if m not in ANYWHERE and _layer(m) is None)
    assert not unplaced, (f"modules in no layer (put them in a package of LAYERS, or give their package a layer "
                          f"here and in docs/architecture.md): {unplaced}")


def test_dependencies_point_down_the_layers() -> None:
    wrong = []
    for item in imports():
        if item.target not in MODULES or item.target in ANYWHERE:
            continue
        mine, theirs = _layer(item.module), _layer(item.target)
        if mine is not None and theirs is not None and theirs > mine:
            wrong.append(f"{_where(item)}: {item.module} ({LAYERS[mine][0]}) imports {item.target} "
                         f"({LAYERS[theirs][0]})")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_the_domain_imports_nothing_outward() -> None:
    outward = [f"{_where(i)}: {i.target}" for i in imports() if i.module.startswith("engine.domain")
               and not i.target.startswith("engine.domain") and i.target not in ANYWHERE
               and i.target not in sys.stdlib_module_names | DOMAIN_MAY_USE]
    # sqlite3 and socket are in the standard library, and I/O all the same.
    outward += [f"{_where(i)}: {i.target}" for i in imports() if i.module.startswith("engine.domain")
                and i.target in ("sqlite3", "socket", "ssl", "subprocess", "asyncio")]
    assert not outward, "the domain imports outward:\n" + "\n".join(outward)


def test_use_cases_and_edges_reach_drivers_only_through_ports() -> None:
    direct = [f"{_where(i)}: {i.module} imports {i.target}" for i in imports()
              if i.module.startswith(NO_DRIVERS) and i.target.startswith(DRIVERS)]
    assert not direct, "driver imports above the adapters:\n" + "\n".join(direct)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for item in imports():
        if item.target in MODULES:
            graph[item.module].add(item.target)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, "modules that import each other (directly or round a loop):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_private_modules_stay_in_their_package() -> None:
    leaks = [f"{_where(i)}: {i.module} imports {i.target}" for i in imports() if i.target in MODULES
             and i.target.rpartition(".")[2].startswith("_") and not i.target.endswith("__init__")
             and _package_of(i.module) != i.target.rpartition(".")[0]]
    assert not leaks, "private modules imported from another package:\n" + "\n".join(leaks)


def test_no_module_stands_at_the_engine_root() -> None:
    loose = sorted(p.name for p in (ROOT / "engine").glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules at engine/ root, beside the layers' packages: {loose}"


def test_the_architecture_page_names_every_package() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    packages = [p for _, group in LAYERS for p in group if p != "function_app"]
    missing = [p for p in packages if p.replace(".", "/") not in page]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_the_checks_see_the_imports_they_check() -> None:
    """The walk finds imports in every form the rules rely on (so that a rule cannot pass by seeing nothing)."""
    seen = {(i.module, i.target) for i in imports()}
    assert ("function_app", "engine.hosting.azure") in seen  # from … import names
    assert ("engine.domain.expressions", "engine.domain.cel_syntax") in seen  # from package import submodule
    assert ("engine.domain.expressions", "cel") in seen  # import of another package
    assert ("engine.hosting.local", "engine.service.engine") in seen  # under TYPE_CHECKING
    assert ("engine.cli.bench", "engine.bench.engine") in seen  # inside a function
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, _strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found
