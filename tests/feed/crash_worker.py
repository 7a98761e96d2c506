"""A queue worker process with a change feed, for the fault test (tests/feed/test_fault.py).

    python tests/feed/crash_worker.py DATA_DIR crash     kills itself (SIGKILL) just before marking dispatched
    python tests/feed/crash_worker.py DATA_DIR recover   works the queue and sweeps until nothing is left

Exit codes: 0 all done (recover), 3 crash mode was never killed, 4 recover ran out of time.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.feed import ChangeFeed, SqliteSubscriptionStore
from engine.hosting.runtime import sqlite_engine
from engine.service.worker import Worker

TENANT = "acme"


def kill(tenant: str, positions: Sequence[int]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    data_dir, mode = Path(sys.argv[1]), sys.argv[2]
    engine = sqlite_engine(data_dir)
    feed = ChangeFeed(engine.events, SqliteSubscriptionStore(data_dir), definitions=engine.catalog,
                      tenants=lambda: [TENANT], allow_private_destinations=True, grace_seconds=0.0,
                      before_mark=kill if mode == "crash" else None)
    engine.processor.on_commit = feed.on_commit
    # A short visibility timeout: what the killed worker had received comes back quickly for the next one.
    worker = Worker(engine.queue, engine.processor, visibility_timeout=1.0, batch_size=4)
    deadline = time.monotonic() + (20 if mode == "crash" else 40)
    while time.monotonic() < deadline:
        worker.run_once()
        if mode == "recover":
            feed.sweeper.sweep_once(wait=5)
            if (engine.queue.depth() == 0 and not engine.events.undispatched(TENANT, limit=1)
                    and feed.dispatcher.drain(0)):
                feed.close()
                return 0
        time.sleep(0.01)
    return 3 if mode == "crash" else 4


if __name__ == "__main__":
    sys.exit(main())
