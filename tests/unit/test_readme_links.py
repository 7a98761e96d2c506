"""Every link in README.md that stays in the repository resolves: a file that exists, or a heading's anchor
(as GitHub makes them: lower case, punctuation dropped, spaces as hyphens, `-1`, `-2` for repeats)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(markdown: str) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_anchors_follow_githubs_rule() -> None:
    assert anchors("# A five-minute tour\n## Running it locally: `waymark serve`\n### 3. Recover\n## Tests\n## Tests") \
        == {"a-five-minute-tour", "running-it-locally-waymark-serve", "3-recover", "tests", "tests-1"}


def test_every_local_link_in_the_readme_resolves() -> None:
    markdown = README.read_text(encoding="utf-8")
    headings = anchors(markdown)
    broken = []
    for target in links(markdown):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: outside the repository
        path, _, fragment = target.partition("#")
        if (path and not (ROOT / path).exists()) or (not path and fragment not in headings):
            broken.append(target)
    assert broken == []
