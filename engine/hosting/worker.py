"""Queue workers of the local host: `WorkerPool`, the threads `waymark serve` runs, and a worker process of its own:
`python -m engine.hosting.worker DATA_DIR` (`waymark worker`).

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: `waymark --help` loads this module
    from engine.hosting.settings import Settings
    from engine.service.engine import Engine


class WorkerPool:
    """N queue worker threads sharing one engine; `stop` lets each finish the command at hand.

    Fairness (engine/service/fairness.py): one tenant's commands occupy at most `tenant_workers` of them (default:
    half, at least one); a watchdog thread hands back the rest of a batch a slow command holds up."""

    def __init__(self, engine: Engine, count: int, *, visibility_timeout: float = 30.0,
                 tenant_workers: int | None = None, batch_size: int = 16, daemon: bool = True,
                 poison_drain_seconds: float = 60.0) -> None:
        from engine.service.fairness import TenantGate, default_tenant_workers

        self.engine = engine
        self.count = count
        self.visibility_timeout = visibility_timeout
        self.batch_size = batch_size
        self.daemon = daemon
        self.poison_drain_seconds = poison_drain_seconds
        self.gate = TenantGate(tenant_workers or default_tenant_workers(count))
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        from engine.service.fairness import HandBack
        from engine.service.worker import Worker, drain_poison_loop

        if self.count:  # what the queue poisoned for a known tenant goes to its parked store
            drainer = threading.Thread(target=drain_poison_loop, name="waymark-poison-drain", daemon=True,
                                       args=(self.engine.queue, self.engine.parked, self.stop_event,
                                             self.poison_drain_seconds))
            drainer.start()
            self.threads.append(drainer)
        workers = [Worker(self.engine.queue, self.engine.processor, visibility_timeout=self.visibility_timeout,
                          batch_size=self.batch_size, failures=self.engine.failures, gate=self.gate)
                   for _ in range(self.count)]
        for number, worker in enumerate(workers):
            thread = threading.Thread(target=worker.run, args=(self.stop_event,), name=f"waymark-worker-{number}",
                                      daemon=self.daemon)
            thread.start()
            self.threads.append(thread)
        if workers:
            watchdog = HandBack(self.engine.queue, lambda: [worker.batch for worker in workers])
            thread = threading.Thread(target=watchdog.run, args=(self.stop_event,), name="waymark-hand-back",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop and join every worker; False if one is still busy after `timeout` seconds."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self.threads)


def run(settings: Settings) -> None:
    from engine.hosting.local import open_engine, open_feed, open_tenants

    tenants = open_tenants(settings)
    engine = open_engine(settings, tenants)  # the store each tenant's configuration names (SQLite or Cosmos)
    feed = open_feed(engine, tenants, settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    feed.start(sweep_interval=settings.feed_sweep_seconds)
    pool = WorkerPool(engine, max(1, settings.workers), visibility_timeout=settings.visibility_timeout,
                      tenant_workers=settings.tenant_workers, batch_size=4, daemon=False)
    pool.stop_event = stop
    pool.start()
    pool.join()
    feed.close()


def main() -> None:
    from engine.hosting.settings import Settings

    settings = Settings(data_dir=Path(sys.argv[1])) if len(sys.argv) > 1 else Settings()
    logging.basicConfig(level=settings.log_level.upper())
    run(settings)


if __name__ == "__main__":
    main()
