"""The embedded engines: which adapters an engine runs on when it is built from a data directory, or in memory.

Hosts (`waymark serve`, the CLI, `function_app.py`) build one `Engine` (engine/service/engine.py) per process and
share it.
"""

from __future__ import annotations

from pathlib import Path

from engine.domain import Services
from engine.service.engine import Engine

__all__ = ["memory_engine", "sqlite_engine"]


def sqlite_engine(data_dir: Path, *, services: Services | None = None, max_dequeue_count: int = 5,
                  busy_timeout: float = 10.0, synchronous: str = "full") -> Engine:
    """The embedded default: one SQLite file per tenant, and a SQLite command queue, under `data_dir`.

    `busy_timeout` is how long a statement waits for a lock held elsewhere before the store reports itself
    unavailable (and the command goes back on the queue). `synchronous` is how every file is synced ("full",
    durable; or "normal": see WAYMARK_SQLITE_SYNCHRONOUS)."""
    from engine.drivers.sqlite import checked_synchronous
    from engine.queues.sqlite import SqliteCommandQueue
    from engine.stores.parked import SqliteParkedStore
    from engine.stores.sqlite import SqliteDefinitionStore, SqliteEventStore

    sync = checked_synchronous(synchronous)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Engine(
        events=SqliteEventStore(data_dir, busy_timeout=busy_timeout, synchronous=sync),
        definitions=SqliteDefinitionStore(data_dir, busy_timeout=busy_timeout, synchronous=sync),
        queue=SqliteCommandQueue(data_dir / "queue.db", max_dequeue_count=max_dequeue_count, synchronous=sync),
        services=services or Services(),
        parked_store=SqliteParkedStore(data_dir, busy_timeout=busy_timeout, synchronous=sync),
    )


def memory_engine(*, services: Services | None = None) -> Engine:
    from engine.queues.memory import MemoryCommandQueue
    from engine.stores.memory import MemoryDefinitionStore, MemoryEventStore

    return Engine(events=MemoryEventStore(), definitions=MemoryDefinitionStore(), queue=MemoryCommandQueue(),
                  services=services or Services())
