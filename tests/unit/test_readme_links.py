"""Every link in README.md and in the documentation pages (docs/*.md) that stays in the repository resolves, as GitHub
shows them: a file that exists, or a heading's anchor (as GitHub makes them: lower case, punctuation dropped, spaces
as hyphens, `-1`, `-2` for repeats; or an explicit `{ #id }`), in the same file or in the Markdown file linked. A
link from a page to a generated reference page (docs/reference/, built from the code by tools/docs) resolves when
the generator makes that page and anchor. The site's strict build (`make docs`) checks the same links with MkDocs'
own rule; this keeps them working on GitHub too, where README's links lead."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        found.update(re.findall(r"\{ *#([\w-]+)[^}]*\}", line))
        if not re.match(r"#{1,6} ", line):
            continue
        heading = re.sub(r"\s*\{[^}]*\}\s*$", "", line.lstrip("#").strip())
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(markdown: str) -> list[str]:
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_anchors_follow_githubs_rule() -> None:
    assert anchors("# A five-minute tour\n## Running it locally: `waymark serve`\n### 3. Recover\n## Tests\n## Tests") \
        == {"a-five-minute-tour", "running-it-locally-waymark-serve", "3-recover", "tests", "tests-1"}
    assert anchors("### GET /x { #get-x }\nText.\n{ #para }") == {"get-x", "para"}


@cache
def generated() -> dict[str, str]:
    from tools.docs.pages import generated_pages

    return generated_pages()


def text_of(path: Path) -> str | None:
    """The Markdown at `path`: the file, or the reference page the docs build generates there; None if neither."""
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if path.is_relative_to(DOCS):
        return generated().get(path.relative_to(DOCS).as_posix())
    return None


def broken(source: Path) -> list[str]:
    markdown = source.read_text(encoding="utf-8")
    outside = re.compile(r"[a-z]+:")  # https:, mailto:: outside the repository
    found = []
    for target in links(markdown):
        if outside.match(target):
            continue
        path, _, fragment = target.partition("#")
        destination = (source.parent / path).resolve() if path else source
        text = markdown if not path else text_of(destination) if destination.suffix == ".md" else None
        missing = text is None and not destination.exists()
        if missing or (fragment and destination.suffix == ".md" and (text is None or fragment not in anchors(text))):
            found.append(target)
    return found


def test_every_local_link_in_the_readme_resolves() -> None:
    assert broken(README) == []


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_local_link_in_a_docs_page_resolves(page: Path) -> None:
    assert broken(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n## Here\n[a](#here) [b](#there) [c](missing.md) [d](page.md#here) [e](page.md#nope) "
                    "`[f](ignored.md)` [g](https://example.org/x)\n")
    assert broken(page) == ["#there", "missing.md", "page.md#nope"]


def test_the_readme_fits_on_a_few_screens() -> None:
    """What it is, the two commands, a taste and the way into the documentation: the manual is docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_the_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert first_block is not None
    assert [line.split()[:2] for line in first_block.group(1).splitlines()] == [["make", "run"], ["make", "test"]]


# A path in the repository as the pages write it: `engine/stores/cosmos.py`, tests/reliability/, engine/tenants*.py.
_PATH = re.compile(r"(?<![\w./{-])((?:engine|tests|infra|samples|tools|docs)/[\w./*{}-]*[\w*/}])")


def named_paths(markdown: str) -> set[str]:
    """The repository paths a page names (a path with a `{placeholder}` is a pattern, not a path: left out)."""
    return {match.group(1) for match in _PATH.finditer(markdown) if "{" not in match.group(1)}


def test_named_paths_are_found() -> None:
    assert named_paths("`engine/stores/cosmos.py` (tests/reliability/, `engine/tenants*.py`), "
                       "`engine/schemas/events/{type}.json`, {data-dir}/tenants/x.db, ./engine/x") \
        == {"engine/stores/cosmos.py", "tests/reliability/", "engine/tenants*.py"}


@pytest.mark.parametrize("page", [README, *PAGES], ids=["README.md", *(page.name for page in PAGES)])
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    """Modules move (issue 15's layout); a page that names where something is must follow."""
    missing = [path for path in named_paths(page.read_text(encoding="utf-8"))
               if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists())]
    assert missing == []
