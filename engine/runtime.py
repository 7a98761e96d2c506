"""The composition root: which adapters an engine runs on, built from a data directory or settings.

Hosts (`waymark serve`, the CLI, `function_app.py`) build one `Engine` per process and share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.domain import Services
from engine.queues.base import CommandQueue
from engine.service.definitions import DefinitionCatalog, SecretSealer
from engine.service.failures import CommandFailures
from engine.service.holding import CircuitBreakers, HoldPolicy
from engine.service.parked import ParkedCommands
from engine.service.processor import CommandProcessor, CommitListener
from engine.service.timers import TimerScheduler
from engine.stores.base import DefinitionStore, EventStore
from engine.stores.parked import MemoryParkedStore, ParkedStore


@dataclass
class Engine:
    events: EventStore
    definitions: DefinitionStore
    queue: CommandQueue
    catalog: DefinitionCatalog = field(init=False)
    processor: CommandProcessor = field(init=False)
    services: Services = field(default_factory=Services)
    on_commit: CommitListener | None = None
    sealer: SecretSealer | None = None  # seals the definitions' secrets at rest (engine/sealing.py)
    scheduler: TimerScheduler | None = None  # default: timers straight onto `queue`, however far away
    # Where each tenant's parked commands are kept (engine/stores/parked.py); hosts pass their durable one.
    parked_store: ParkedStore = field(default_factory=MemoryParkedStore)
    parked: ParkedCommands = field(init=False)
    # How an outage is held (engine/service/holding.py), and the process's circuit breakers, one per tenant.
    hold: HoldPolicy = field(default_factory=HoldPolicy)
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    failures: CommandFailures = field(init=False)
    # The tenant's change-feed subscriptions an operator must know about (paused, gone): set by the host that runs
    # the feed (engine/feed/outbox.py ChangeFeed.attention), for /readyz and the dashboard.
    feed_attention: Callable[[str], list[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        self.catalog = DefinitionCatalog(self.definitions, sealer=self.sealer)
        if self.scheduler is None:
            self.scheduler = TimerScheduler(self.queue)
        self.processor = CommandProcessor(self.events, self.catalog, services=self.services,
                                          on_commit=self.on_commit, scheduler=self.scheduler)
        self.parked = ParkedCommands(self.parked_store, self.processor)
        self.failures = CommandFailures(self.parked, self.breakers, self._resend, self.hold,
                                        max_dequeue_count=getattr(self.queue, "max_dequeue_count", 5))

    def _resend(self, body: Mapping[str, Any], delay: float) -> None:
        self.queue.send(body, delay=delay)


def sqlite_engine(data_dir: Path, *, services: Services | None = None, max_dequeue_count: int = 5,
                  busy_timeout: float = 10.0, synchronous: str = "full") -> Engine:
    """The embedded default: one SQLite file per tenant, and a SQLite command queue, under `data_dir`.

    `busy_timeout` is how long a statement waits for a lock held elsewhere before the store reports itself
    unavailable (and the command goes back on the queue). `synchronous` is how every file is synced ("full",
    durable; or "normal": see WAYMARK_SQLITE_SYNCHRONOUS)."""
    from engine.queues.sqlite import SqliteCommandQueue
    from engine.stores._sqlite import checked_synchronous
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
