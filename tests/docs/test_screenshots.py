"""The dashboard's pictures in the documentation are the browser tests' screenshots (`make screenshots` copies
them into docs/img/): every picture the pages show is one the tests take, and every one they publish is shown."""

from __future__ import annotations

import re
from pathlib import Path

from tests.ui.helpers import DOCS_IMAGES, DOCS_SCREENSHOTS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_dashboard_picture_in_docs_img_is_a_browser_test_screenshot() -> None:
    assert {path.name for path in DOCS_IMAGES.glob("ui-*.png")} == set(DOCS_SCREENSHOTS.values())


def test_every_published_screenshot_is_shown_on_a_page() -> None:
    shown = {match for page in DOCS.glob("*.md") for match in re.findall(r"img/(ui-[\w-]+\.png)", page.read_text())}
    assert shown == set(DOCS_SCREENSHOTS.values())


def test_make_screenshots_runs_the_browser_tests_with_publishing_on() -> None:
    makefile = (DOCS.parent / "Makefile").read_text()
    recipe = makefile.split("\nscreenshots:", 1)[1].split("\n\n", 1)[0]
    assert "WAYMARK_DOCS_SCREENSHOTS=1" in recipe and "tests/ui/test_ui_browser.py" in recipe
