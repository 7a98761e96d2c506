"""The process whose disk test_power_loss.py cuts the power of: `python -m tests.reliability.power_loss_worker
DATA_DIR SYNCHRONOUS ROUNDS BATCH`, run under the power-loss shim (powerloss_shim.c).

A producer thread accepts ROUNDS * BATCH triggers (a `send` to the command queue, as the API does before it
answers 202) while the main thread runs the queue worker over them (receive, group commit, complete), so sends
are synced between any two steps of the worker. A trigger is acknowledged on stdout, `<event number> <instance>
<trigger id>`, only once its send has returned: the event number is the shim's count of syncs begun by then, so
the test knows which disks (which moments of the power cut) must keep it.
Half way, both files are checkpointed (as the store's background checkpoints and SQLite's automatic ones do in a
longer run), so the cut also falls inside checkpoints. The process ends with SIGKILL: nothing is closed cleanly.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

from engine.domain import Trigger
from engine.drivers.sqlite import checked_synchronous, durable
from engine.hosting.runtime import sqlite_engine
from engine.service.commands import SendTrigger, to_message
from engine.service.worker import Worker

TENANT = "acme"
INSTANCES = ("claim-1", "claim-2", "claim-3")


def checkpoint(path: Path, synchronous: str) -> None:
    """A checkpoint of the file from a connection of its own, left open (the last one to close would delete the
    WAL): the WAL is synced, copied into the database file, and that file synced."""
    connection = sqlite3.connect(path, isolation_level=None)
    durable(connection, checked_synchronous(synchronous))
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    _kept.append(connection)


_kept: list[sqlite3.Connection] = []


def main() -> None:
    data_dir, synchronous, rounds, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    events = ctypes.c_long.in_dll(ctypes.CDLL(None), "powerloss_events")
    engine = sqlite_engine(data_dir, synchronous=synchronous)
    worker = Worker(engine.queue, engine.processor, batch_size=batch)
    total = rounds * batch

    def produce() -> None:
        for sent in range(total):
            if sent == total // 2:
                checkpoint(engine.queue.path, synchronous)
                checkpoint(engine.events.database_path(TENANT), synchronous)
            instance_id, trigger = INSTANCES[sent % len(INSTANCES)], Trigger("update", f"t-{sent}", {"amount": sent})
            engine.queue.send(to_message(SendTrigger(TENANT, instance_id, trigger)))
            print(events.value, instance_id, trigger.id, flush=True)
            if sent % batch == batch - 1:
                time.sleep(0.002)  # let the worker take a batch while the next one is sent

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive() or engine.queue.depth():
        if not worker.run_once():
            time.sleep(0.001)
    producer.join()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
