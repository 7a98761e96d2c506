"""`make docs` fails on a broken link: its recipe, run on a site with one, exits non-zero. (`mkdocs build --quiet`
once passed such a site: quiet drops warnings before strict mode counts them.) The link validation settings are
mkdocs.yml's own."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def docs_recipe() -> list[str]:
    """The `mkdocs build …` command of the Makefile's `docs` target, as arguments after `mkdocs`."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe is not None, "the Makefile has a docs target"
    line = next(line for line in recipe.group(1).splitlines() if "mkdocs build" in line)
    words = shlex.split(line)
    return words[next(i for i, word in enumerate(words) if word.endswith("mkdocs")) + 1:]


def build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    del config["hooks"], config["extra_css"]  # the generated reference pages, this site's style sheet
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n## Here\n")
    (docs / "other.md").write_text(page)
    config.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"), nav=["index.md", "other.md"])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(mkdocs), *docs_recipe(), "-f", str(tmp_path / "mkdocs.yml")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_recipe_builds_a_sound_site(tmp_path: Path) -> None:
    done = build(tmp_path, "# Other\n\nSee [here](index.md#here).\n")
    assert done.returncode == 0, done.stderr


def test_the_recipe_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    done = build(tmp_path, "# Other\n\nSee [there](index.md#there).\n")
    assert done.returncode != 0
    assert "does not contain an anchor '#there'" in done.stderr
