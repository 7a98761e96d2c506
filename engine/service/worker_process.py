"""A worker process on the embedded store: `python -m engine.service.worker_process DATA_DIR` (`waymark worker`).

Runs queue workers, the change feed's dispatcher and its outbox sweeper until SIGINT/SIGTERM; on a signal the
message at hand is finished and the rest of a received batch is released. Configured like `waymark serve`, from
WAYMARK_* environment variables. The reliability suite SIGKILLs it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from engine.service.worker import Worker, drain_poison_loop
from engine.settings import Settings


def run(settings: Settings) -> None:
    from engine.cli.serve import open_engine, open_feed, open_tenants

    tenants = open_tenants(settings)
    engine = open_engine(settings, tenants)  # the store each tenant's configuration names (SQLite or Cosmos)
    feed = open_feed(engine, tenants, settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    feed.start(sweep_interval=settings.feed_sweep_seconds)
    workers = [threading.Thread(target=Worker(engine.queue, engine.processor,
                                              visibility_timeout=settings.visibility_timeout, batch_size=4,
                                              failures=engine.failures).run,
                                args=(stop,), name=f"worker-{n}")
               for n in range(max(1, settings.workers))]
    workers.append(threading.Thread(target=drain_poison_loop, args=(engine.queue, engine.parked, stop, 60.0),
                                    name="poison-drain"))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    feed.close()


def main() -> None:
    settings = Settings(data_dir=Path(sys.argv[1])) if len(sys.argv) > 1 else Settings()
    logging.basicConfig(level=settings.log_level.upper())
    run(settings)


if __name__ == "__main__":
    main()
