"""The getting-started page (docs/getting-started.md) is true: its tour's commands are run, as the page says,
against a real `waymark serve` started in a fresh directory, and what they print is compared with what the page
shows. The page is the source of truth; README's taste shows some of its steps, as the page shows them.

How the page is read: a code block whose lines start with `$ ` is a session; each `$ ` line (with the lines its
trailing `\\` continues) is a command, and the lines up to the next command are what it prints (stdout and stderr,
trailing spaces dropped, at 100 columns). Before comparing, both sides are masked: times, generated ids (trigger
ids, cut to 11 hex digits and `…`), keys and the server's port. A `…` in the page stands for any text on its line
(the page elides long JSON that way). The setup block's shell lines (`H=…; J=…`) are run before every command,
after the `export` line the server printed, as a reader would do in their second terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
README = ROOT / "README.md"
TOUR = "## A five-minute tour"
COLUMNS = "100"

MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{11}…"), "<id>…"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"\bwm[ak]_[A-Za-z0-9_-]{20,}"), "<key>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]


@dataclass
class Step:
    command: str
    expected: list[str]


@dataclass
class Server:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def section(markdown: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same level."""
    start = markdown.index(heading + "\n")
    level = heading.split(" ")[0]
    rest = markdown[start + len(heading):]
    end = re.search(rf"^{level} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def steps(block: str) -> list[Step]:
    found: list[Step] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"output before the first command of a session: {line!r}"
        command = [line[2:]]
        while command[-1].endswith("\\"):
            i += 1
            command.append(lines[i])
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i].rstrip())
            i += 1
        found.append(Step("\n".join(command), expected))
    return found


def tour(markdown: str) -> tuple[str, list[Step]]:
    """The setup lines to run before each command, and every command of the tour with its output."""
    blocks = code_blocks(section(markdown, TOUR))
    setup = "\n".join(line for line in blocks[0].splitlines() if re.match(r"[A-Z]+=", line))
    assert "H=" in setup and "J=" in setup, "the setup block defines H and J"
    return setup, [step for block in blocks[1:] if block.startswith("$ ") for step in steps(block)]


def masked(line: str) -> str:
    for pattern, mask in MASKS:
        line = pattern.sub(mask, line)
    return line


def matches(expected: str, actual: str) -> bool:
    parts = [re.escape(part) for part in masked(expected).split("…")]
    return re.fullmatch(".*?".join(parts), masked(actual)) is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """`waymark serve` as `make run` starts it, in a fresh directory (so `.waymark/` is there), on a free port."""
    home = tmp_path_factory.mktemp("tour")
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAYMARK_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS=COLUMNS, WAYMARK_PORT="0")
    process = subprocess.Popen([str(Path(sys.executable).parent / "waymark"), "serve"], cwd=home, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = Server(process)
    ready = threading.Event()

    def read() -> None:  # drains the pipe so the server never blocks on it
        assert process.stdout is not None
        for line in process.stdout:
            running.output.append(line)
            if "export WAYMARK_URL=" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "waymark serve printed no export line:\n" + "".join(running.output)
        url = re.search(r"WAYMARK_URL=(\S+)", "".join(running.output))
        assert url is not None
        deadline = time.monotonic() + 30
        while httpx.get(f"{url.group(1)}/healthz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield running, home
    finally:
        process.terminate()
        process.wait(30)
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def test_the_tour_prints_what_the_page_shows(server: tuple[Server, Path]) -> None:
    running, home = server
    setup, commands = tour(PAGE.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    export = next(line.strip() for line in running.output if line.strip().startswith("export WAYMARK_URL="))
    env = {key: value for key, value in os.environ.items() if not key.startswith("WAYMARK_")}
    env.update(COLUMNS=COLUMNS, NO_COLOR="1", PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for step in commands:
        done = subprocess.run(["bash", "-c", f"{export}\n{setup}\n{step.command}"], cwd=home, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        actual = [line.rstrip() for line in done.stdout.replace("\r\n", "\n").rstrip("\n").split("\n")]
        if actual == [""]:
            actual = []
        if len(actual) != len(step.expected) or not all(map(matches, step.expected, actual)):
            pytest.fail(f"$ {step.command}\n--- the page shows:\n" + "\n".join(step.expected)
                        + "\n--- it printed:\n" + "\n".join(actual), pytrace=False)


def test_the_banner_is_the_one_the_page_shows(server: tuple[Server, Path]) -> None:
    running, home = server
    page = PAGE.read_text(encoding="utf-8")
    shown = next(block for block in code_blocks(page) if block.startswith("Waymark serving on"))
    printed = [line.rstrip().replace(str(home), "/home/you/waymark") for line in running.output[: len(shown.splitlines())]]
    assert len(printed) == len(shown.splitlines())
    for expected, actual in zip(shown.splitlines(), printed, strict=True):
        assert matches(expected, actual), f"the page shows:\n{shown}\nit printed:\n" + "\n".join(printed)


def shown_in(page_lines: list[str], readme_lines: list[str]) -> bool:
    """Whether README's output of a command is the page's with lines left out: none changed, added or reordered."""
    remaining = iter(page_lines)
    return all(line in remaining for line in readme_lines)


def test_the_readme_taste_is_the_tour() -> None:
    """README's taste shows steps of the tour, which the tests above run: each of its commands is one of the page's,
    and what README shows it print is the page's output with lines left out (the instance cards), none changed."""
    readme, page = README.read_text(encoding="utf-8"), PAGE.read_text(encoding="utf-8")
    assert "(docs/getting-started.md)" in readme, "README links to the tour"
    outputs = {step.command: step.expected for step in tour(page)[1]}
    shown = [step for block in code_blocks(readme) if block.startswith("$ ") for step in steps(block)]
    assert len(shown) >= 3, "README shows a taste of the tour"
    for step in shown:
        assert step.command in outputs, f"README shows a command the tour does not run: {step.command}"
        assert shown_in(outputs[step.command], step.expected), (
            f"$ {step.command}\n--- README shows:\n" + "\n".join(step.expected)
            + "\n--- the tour shows:\n" + "\n".join(outputs[step.command]))


def test_masks_and_elisions() -> None:
    assert matches('{"id":"claim-42",…,"version":2,…}', '{"id":"claim-42","state":"draft","version":2,"fault":null}')
    assert not matches('{"id":"claim-42",…,"version":2,…}', '{"id":"claim-42","version":3}')
    assert matches(" 3   2025-01-31 23:54:12   1b7c980b6e0…   submit", " 3   2026-11-29 15:23:35   5a2acb69535…   submit")
    assert matches("wmk_TZiG7bbF3PNJ8JemQ2UFjb_GCMo_bc2k6aNtGTYzBQo", "wmk_Yd2nWMHlDLS29U0Ps66BuKyUzqCuTT_zlTei_AX2-to")
    assert not matches("exit 3", "exit 4")
    assert steps("$ a \\\n  b\nout 1\n\n$ c\n") == [Step("a \\\n  b", ["out 1", ""]), Step("c", [])]
    assert shown_in(["a", "b", "c"], ["a", "c"]) and not shown_in(["a", "b", "c"], ["c", "a"])
    assert not shown_in(["a", "b"], ["a", "x"])
