"""Outbox marks that ride along the next group commit of their tenant's file (the SQLite event store).

The change feed marks commits dispatched in batches, from its marker thread. Written in a transaction of their
own, the marks compete with the worker's appends for the file's write lock — SQLite's busy handler then sleeps in
milliseconds — and wake a thread that takes the GIL from the worker. So a mark first waits a moment (`wait`) for
the next append to the same file, whose transaction writes it too: one transaction, one sync (the marks are then
synced with the commits, which a mark of its own never waits for). A mark that no append took in time, or whose
ride failed, is written by its caller in a transaction of its own, as before; a mark written twice changes
nothing (`dispatched = 0` is part of its UPDATE).

When no append was made lately, nothing is likely to come: the mark does not wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

RIDE_SECONDS = 0.01  # a busy worker appends every few milliseconds


@dataclass(eq=False)
class Ride:
    """The positions one `mark_dispatched` call offers to the next append."""

    positions: Sequence[int]
    done: threading.Event = field(default_factory=threading.Event)
    written: bool = False


class MarkRides:
    """The marks of each tenant waiting for an append, and the appends that take them."""

    def __init__(self, *, wait: float = RIDE_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.wait = wait
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Ride]] = {}
        self._appended: dict[str, float] = {}  # the time of each tenant's last append
        # For tuning and `waymark bench engine`: the appends that wrote marks, and the mark transactions of their own.
        self.ridden = 0
        self.alone = 0

    def offer(self, tenant: str, positions: Sequence[int], *, patience: float) -> bool:
        """Wait for an append of the tenant to write the marks: True when one did (committed with it), False when
        the caller must write them itself. `patience` bounds the wait for an append that took them and is still
        in its transaction."""
        with self._lock:
            last = self._appended.get(tenant)
            if last is None or self._monotonic() - last > self.wait:
                return False
            ride = Ride(positions)
            self._waiting.setdefault(tenant, []).append(ride)
        if ride.done.wait(self.wait):
            return ride.written
        with self._lock:
            waiting = self._waiting.get(tenant, [])
            if ride in waiting:  # not taken: withdrawn
                waiting.remove(ride)
                return False
        ride.done.wait(patience)  # taken by an append still in its transaction
        return ride.written

    def take(self, tenant: str) -> list[Ride]:
        """For an append that holds the file's write lock: the marks waiting to ride with it. Each must be
        `finished`."""
        with self._lock:
            self._appended[tenant] = self._monotonic()
            return self._waiting.pop(tenant, [])

    def finished(self, rides: Sequence[Ride], *, written: bool) -> None:
        """The append that took `rides` committed them (`written`) or not."""
        if written and rides:
            with self._lock:
                self.ridden += 1
        for ride in rides:
            ride.written = written
            ride.done.set()
