"""A worker process on the embedded store: `python -m engine.service.worker_process DATA_DIR`.

Runs queue workers until SIGINT/SIGTERM; on a signal the message at hand is finished and the rest of a
received batch is released. Used by `waymark worker` and by the reliability suite (which SIGKILLs it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from engine.runtime import sqlite_engine
from engine.service.worker import Worker


def run(data_dir: Path, *, threads: int = 1, visibility_timeout: float = 30.0, max_dequeue_count: int = 5,
        busy_timeout: float = 10.0) -> None:
    engine = sqlite_engine(data_dir, max_dequeue_count=max_dequeue_count, busy_timeout=busy_timeout)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workers = [threading.Thread(target=Worker(engine.queue, engine.processor, visibility_timeout=visibility_timeout,
                                              batch_size=4).run, args=(stop,), name=f"worker-{n}")
               for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main() -> None:
    logging.basicConfig(level=os.environ.get("WAYMARK_LOG_LEVEL", "WARNING"))
    run(Path(sys.argv[1]), threads=int(os.environ.get("WAYMARK_WORKERS", "1")),
        visibility_timeout=float(os.environ.get("WAYMARK_VISIBILITY_TIMEOUT", "30")),
        busy_timeout=float(os.environ.get("WAYMARK_BUSY_TIMEOUT", "10")),
        max_dequeue_count=int(os.environ.get("WAYMARK_MAX_DEQUEUE_COUNT", "5")))


if __name__ == "__main__":
    main()
