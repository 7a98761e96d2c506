"""An engine: the use cases (processing, the catalog, parked commands, failures) over the ports it is given.

Hosts choose the adapters (engine/hosting/runtime.py builds the embedded ones; engine/hosting/local.py and
engine/hosting/azure.py those of `waymark serve` and the Functions app) and build one `Engine` per process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    sealer: SecretSealer | None = None  # seals the definitions' secrets at rest (engine/tenants/sealing.py)
    scheduler: TimerScheduler | None = None  # default: timers straight onto `queue`, however far away
    # Where each tenant's parked commands are kept (engine/stores/parked.py); hosts pass their durable one.
    parked_store: ParkedStore = field(default_factory=MemoryParkedStore)
    parked: ParkedCommands = field(init=False)
    # How an outage is held (engine/service/holding.py), and the process's circuit breakers, one per tenant.
    hold: HoldPolicy = field(default_factory=HoldPolicy)
    breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    failures: CommandFailures = field(init=False)
    # The tenant's change-feed subscriptions an operator must know about (paused, gone): set by the host that runs
    # the feed (engine/feed/changefeed.py ChangeFeed.attention), for /readyz and the dashboard.
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
