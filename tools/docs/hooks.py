"""MkDocs hooks (mkdocs.yml `hooks:`): the generated reference pages, and a check that the built site fetches nothing
from another host when it is read.

`on_files` adds, under `reference/`, pages that are built from the code at every build (so they cannot drift):
`cli.md` (the Typer app), `http-api.md` with `openapi.json` (the OpenAPI document),
`configuration.md` (the settings declarations), `definition.md` with `workflow-definition.json` (the definition's
JSON Schema) and `events.md` with `asyncapi.json` and `events/{type}.json` (the change feed's documents).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # mkdocs loads this file by path; the generators import `tools.docs`
    sys.path.insert(0, str(ROOT))

from mkdocs.config.defaults import MkDocsConfig  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402

from tools.docs.pages import generated_pages  # noqa: E402

# A script, style sheet, font, frame or image that the browser would fetch from elsewhere when the page is read.
_EXTERNAL = re.compile(r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']?(?:https?:)?//|"""
                       r"""<link\b[^>]*\bhref=["']?(?:https?:)?//[^>]*>|@import\s+(?:url\()?["']?(?:https?:)?//|"""
                       r"""url\(["']?(?:https?:)?//""", re.IGNORECASE)
# <link> elements that are only links for people or search engines, not fetched when the page is shown.
_NOT_FETCHED = re.compile(r"""\brel=["']?(?:canonical|alternate|author|license|me)\b""", re.IGNORECASE)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, content in generated_pages().items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_post_build(config: MkDocsConfig) -> None:
    found = [f"{path.relative_to(config.site_dir)}: {match.group(0)[:120]}"
             for path in Path(config.site_dir).rglob("*") if path.suffix in {".html", ".css"}
             for match in _EXTERNAL.finditer(path.read_text(encoding="utf-8", errors="replace"))
             if not _NOT_FETCHED.search(match.group(0))]
    found += [f"{path.relative_to(config.site_dir)}: a Mermaid diagram (Material would load mermaid.js from a CDN)"
              for path in Path(config.site_dir).rglob("*.html")
              if 'class="mermaid"' in path.read_text(encoding="utf-8", errors="replace")]
    if found:
        raise PluginError("the site fetches from another host when read (it must work offline):\n  "
                          + "\n  ".join(found[:20]))
