"""The HTTP API reference page, from the OpenAPI document of the app `waymark serve` runs (the same document
`GET /openapi.json` serves), and the document itself for download."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tools.docs.markdown import cell, code, table
from tools.docs.schema_reference import anchor
from tools.docs.schema_tables import kind, limits, properties_table

__all__ = ["http_api_reference", "openapi_document", "operation_anchor"]

INTRO = """\
# HTTP API reference

Generated at every build of this site from the OpenAPI {version} document of the app that `waymark serve` and the
Functions app run: the document a server serves at `GET /openapi.json` ([this build's copy](openapi.json), for
code generators and API tools). A running server also shows it in Swagger UI at `/docs` and in ReDoc at `/redoc`,
with their scripts served by the server itself.

{description}
"""

DEFINITION = "WorkflowDefinition"  # components embedded from the definition schema, documented on their own page


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of `waymark serve`'s app, built on a throw-away data directory without the samples."""
    from engine.hosting.local import open_service
    from engine.hosting.settings import Settings

    with tempfile.TemporaryDirectory(prefix="waymark-docs-") as data_dir:
        service = open_service(Settings(data_dir=Path(data_dir), load_samples=False, workers=0))
        try:
            return service.app.openapi()
        finally:
            service.close()


def operation_anchor(method: str, path: str) -> str:
    return anchor(f"{method}-{path}")


def _link(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    if name == DEFINITION or name.startswith(DEFINITION + "."):
        part = name.removeprefix(DEFINITION).lstrip(".") or "workflow-definition"
        return f"[{name}](definition.md#{anchor(part)})"
    return f"[{name}](#schema-{anchor(name)})"


def http_api_reference(document: dict[str, Any]) -> str:
    info = document["info"]
    parts = [INTRO.format(version=document["openapi"], description=info.get("description", ""))]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append((method, path, operation))
    parts.append(table(["operations", ""], [
        (f"[{tag}](#{anchor(tag)})", ", ".join(f"[{code(m.upper() + ' ' + p)}](#{operation_anchor(m, p)})"
                                               for m, p, _ in ops)) for tag, ops in by_tag.items()]))
    for tag, operations in by_tag.items():
        parts.append(f"## {tag.capitalize()} {{ #{anchor(tag)} }}\n")
        parts += [_operation(method, path, operation) for method, path, operation in operations]
    parts.append("## Schemas\n\nThe bodies above. The workflow definition's parts are on the "
                 "[definition reference](definition.md).\n")
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name != DEFINITION and not name.startswith(DEFINITION + "."):
            parts.append(f"### {name} {{ #schema-{anchor(name)} }}\n\n{schema.get('description', '')}\n\n"
                         + (properties_table(schema, _link) or f"Value: {kind(schema, _link)}.\n"))
    return "\n".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    text = [f"### {method.upper()} {path} {{ #{operation_anchor(method, path)} }}\n",
            (operation.get("summary", "") + ".").replace("..", ".") + "\n"]
    if operation.get("description"):
        text.append(operation["description"] + "\n")
    text.append("Needs a key (`Authorization: Bearer …`).\n" if operation.get("security") else "Needs no key.\n")
    params = operation.get("parameters", ())
    if params:
        text.append(table(["parameter", "in", "required", "value", "what"], [
            (code(p["name"]), p["in"], "yes" if p.get("required") else "", cell(kind(p.get("schema"), _link)),
             cell(", ".join(filter(None, [p.get("description") or p.get("schema", {}).get("description"),
                                           *limits(p.get("schema", {}))])))) for p in params]))
    body = operation.get("requestBody")
    if body:
        media = ", ".join(f"{code(m)}: {kind(c.get('schema'), _link)}" for m, c in body.get("content", {}).items())
        text.append(f"Body{' (required)' if body.get('required') else ''}: {media}.\n")
    rows = []
    for status, response in sorted(operation.get("responses", {}).items()):
        bodies = dict.fromkeys(kind(c.get("schema"), _link) for c in response.get("content", {}).values()
                               if c.get("schema"))
        rows.append((code(status), cell(response.get("description")), ", ".join(bodies)))
    text.append(table(["status", "what", "body"], rows))
    return "\n".join(text)
