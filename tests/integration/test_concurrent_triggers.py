"""32 triggers to one instance at once: every outcome recorded exactly once, sequences gapless."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.domain import Trigger
from engine.hosting.runtime import memory_engine, sqlite_engine
from engine.service.commands import CreateInstance
from engine.service.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
T = "acme"
TRIGGERS = 32


def _prepare(engine: Engine) -> None:
    engine.catalog.put(T, json.loads((ROOT / "samples" / "expense-claim.json").read_text()))
    engine.processor.create(CreateInstance(T, "claim", "expense-claim", "create", context={"claimant": "ann"}))


def _send(engine: Engine, numbers: range, errors: list[BaseException]) -> None:
    try:
        for n in numbers:
            engine.processor.trigger(T, "claim", Trigger("update", f"trigger-{n}", {"amount": n}))
    except BaseException as e:  # the test asserts none escapes
        errors.append(e)


def _check(engine: Engine) -> None:
    events = engine.events.read(T, "claim")
    assert [e.sequence for e in events] == list(range(1, TRIGGERS + 2))
    trigger_ids = [e.trigger_id for e in events[1:]]
    assert sorted(trigger_ids) == sorted(f"trigger-{n}" for n in range(TRIGGERS))
    assert engine.events.load(T, "claim").version == TRIGGERS + 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_four_threads(kind: str, tmp_path: Path) -> None:
    engine = memory_engine() if kind == "memory" else sqlite_engine(tmp_path)
    _prepare(engine)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_send, args=(engine, range(k, TRIGGERS, 4), errors)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _check(engine)


def _process_main(data_dir: str, start: int, barrier: Any, failures: Any) -> None:
    engine = sqlite_engine(Path(data_dir))
    barrier.wait()
    errors: list[BaseException] = []
    _send(engine, range(start, TRIGGERS, 2), errors)
    failures.put([repr(e) for e in errors])


def test_two_processes_on_sqlite(tmp_path: Path) -> None:
    _prepare(sqlite_engine(tmp_path))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    failures = context.Queue()
    processes = [context.Process(target=_process_main, args=(str(tmp_path), k, barrier, failures)) for k in range(2)]
    for process in processes:
        process.start()
    reported = [failures.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert reported == [[], []]
    _check(sqlite_engine(tmp_path))
