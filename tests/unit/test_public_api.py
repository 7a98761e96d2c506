"""Each package says in its __init__ what others may use (STYLE 7)."""

import engine.domain


def test_the_domain_exports_what_it_declares() -> None:
    for name in engine.domain.__all__:
        assert hasattr(engine.domain, name), name
    assert {"Instance", "Event", "Commit", "decide_trigger", "decide_create", "decide_recover", "decide_terminate",
            "parse_definition", "fold", "ConcurrencyConflict", "Registry"} <= set(engine.domain.__all__)


def test_the_domain_imports_nothing_outward() -> None:
    import ast
    from pathlib import Path

    forbidden = ("sqlite3", "httpx", "fastapi", "azure", "uvicorn", "engine.stores", "engine.queues", "engine.service",
                 "engine.api", "engine.cli", "engine.feed", "socket", "requests")
    for path in Path(engine.domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert not name.startswith(forbidden), f"{path.name} imports {name}"
