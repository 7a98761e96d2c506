"""The built site must read offline: the build fails when a page would fetch a script, style, font or image from
another host (tools/docs/hooks.py `on_post_build`), or holds a Mermaid diagram (Material loads mermaid.js from a
CDN to draw one)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from mkdocs.exceptions import PluginError

from tools.docs.hooks import on_post_build


def build(tmp_path: Path, html: str, css: str = "") -> None:
    (tmp_path / "index.html").write_text(html)
    (tmp_path / "main.css").write_text(css)
    on_post_build(SimpleNamespace(site_dir=str(tmp_path)))  # type: ignore[arg-type]


@pytest.mark.parametrize("html, css", [
    ('<script src="https://unpkg.com/mermaid@11/dist/mermaid.min.js"></script>', ""),
    ('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">', ""),
    ('<link rel=preconnect href=//fonts.gstatic.com>', ""),
    ('<img alt="logo" src="https://cdn.example.org/logo.svg">', ""),
    ("", '@import url("https://fonts.googleapis.com/css2?family=Inter");'),
    ("", "body { background: url(https://cdn.example.org/bg.png) }"),
    ('<pre class="mermaid"><code>stateDiagram-v2</code></pre>', ""),
])
def test_a_page_that_fetches_from_elsewhere_fails_the_build(tmp_path: Path, html: str, css: str) -> None:
    with pytest.raises(PluginError, match="offline"):
        build(tmp_path, html, css)


def test_local_assets_and_plain_links_pass(tmp_path: Path) -> None:
    build(tmp_path, '<link rel="stylesheet" href="assets/main.css"><script src="assets/bundle.js"></script>'
                    '<link rel="canonical" href="https://waymark.example.org/"><a href="https://cloudevents.io">CE</a>'
                    '<img src="img/ui-overview.png">', "body { background: url(img/bg.png) }")
