"""Putting a timer's firing on the command queue so that it arrives when due, however far away that is.

A firing is a command message (`{"kind": "timer", …}`) sent with a delay: the SQLite queue keeps it in its
indexed `scheduled` table; an Azure Storage queue hides it for up to 7 days (`max_delay`). A timer due later than
the queue can hold is kept in the tenant's timer index (engine/stores/timers.py) and brought forward by
`bring_forward`, which the timer function runs: what is due within `max_delay` goes on the queue with the rest of
its delay, and only then leaves the index (a crash in between sends it twice; its trigger id makes the second a
duplicate).

The firing is scheduled *before* the commit that records `TimerScheduled` is appended, so a timer the history
holds is never without its message; a message whose commit then lost a race finds no such timer and is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain import parse_time, timestamp
from engine.queues.base import CommandQueue
from engine.stores.timers import IndexedTimer, TimerIndex

__all__ = ["TimerScheduler"]

log = logging.getLogger("waymark.timers")


class TimerScheduler:
    def __init__(self, queue: CommandQueue, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_delay: float | None = None, index: TimerIndex | None = None) -> None:
        if max_delay is not None and index is None:
            raise ValueError("a scheduler whose queue limits delays (max_delay) needs a timer index for the rest")
        self.queue = queue
        self.clock = clock
        self.max_delay = max_delay
        self.index = index

    def schedule(self, tenant: str, body: Mapping[str, Any], *, due: datetime, key: str, instance_id: str) -> None:
        """Deliver command `body` at `due` (at once when it is past). `key` names it in the index (a trigger id)."""
        delay = (due - self.clock()).total_seconds()
        if self.max_delay is not None and delay > self.max_delay:
            assert self.index is not None
            self.index.put(tenant, IndexedTimer(key, instance_id, timestamp(due), dict(body)))
            return
        self.queue.send(body, delay=max(0.0, delay))

    def bring_forward(self, tenant: str, *, limit: int = 500) -> int:
        """Move the indexed timers of `tenant` that are due within `max_delay` onto the queue; how many moved."""
        if self.index is None or self.max_delay is None:
            return 0
        moved = 0
        while True:
            now = self.clock()
            horizon = timestamp(now + timedelta(seconds=self.max_delay))
            batch = self.index.due(tenant, until=horizon, limit=limit)
            for timer in batch:
                delay = (parse_time(timer.due_at) - now).total_seconds()
                self.queue.send(timer.body, delay=max(0.0, min(delay, self.max_delay)))
                self.index.remove(tenant, timer)
                moved += 1
            if len(batch) < limit:
                break
        if moved:
            log.info("brought %d timer(s) forward onto the command queue", moved, extra={"tenant": tenant})
        return moved
