"""The outbox's last step: commits done with by every lane are marked dispatched in batches, by one marker thread,
so marking costs one write per batch and not one per commit (on SQLite, riding along the next group commit)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from engine.domain import Commit
from engine.feed.subscriptions import SubscriptionStore
from engine.stores.base import EventStore

log = logging.getLogger("waymark.feed")

# A commit to be marked dispatched, and whether deliveries of it were recorded (to forget once it is marked).
Mark = tuple[Commit, bool]


class Marker:
    """Collects the commits to mark, per tenant, and marks them on its thread; `release` is told of each commit
    marked (or whose marking failed: the sweeper publishes it again)."""

    def __init__(self, store: EventStore, deliveries: SubscriptionStore, *, release: Callable[..., None],
                 hurry: threading.Event, mark_delay: float,
                 before_mark: Callable[[str, Sequence[int]], None] | None) -> None:
        self.store = store
        self.deliveries = deliveries
        self.release = release
        self.hurry = hurry  # set while someone drains: mark at once rather than let a batch build up
        self.mark_delay = mark_delay
        self.before_mark = before_mark  # a test hook: the fault test kills the process here
        self._marks: dict[str, list[Mark]] = {}
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="waymark-feed-marker", daemon=True)
        self._thread.start()

    def add(self, tenant: str, marks: Sequence[Mark]) -> None:
        with self._ready:
            self._marks.setdefault(tenant, []).extend(marks)
            self._ready.notify()

    def close(self) -> None:
        """Mark what is queued, then stop (`join` waits for that)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._marks and not self._closed:
                    self._ready.wait(0.5)
            # Let a batch build up: marking is one write transaction on the tenant's event file, competing with
            # appends for its lock, and nothing waits for it (the sweeper's grace period is far longer) — unless
            # someone drains (a shutdown, a test): then at once.
            if not self._closed:
                self.hurry.wait(self.mark_delay)
            with self._ready:
                batch, self._marks = self._marks, {}
            if not batch and self._closed:
                return
            for tenant, marks in batch.items():
                self._mark(tenant, marks)

    def _mark(self, tenant: str, marks: Sequence[Mark]) -> None:
        positions = [commit.position or 0 for commit, _ in marks]
        try:
            if self.before_mark is not None:
                self.before_mark(tenant, positions)
            self.store.mark_dispatched(tenant, positions)
            recorded = [commit.position or 0 for commit, was_recorded in marks if was_recorded]
            if recorded:
                self.deliveries.forget_deliveries(tenant, recorded)
        except Exception:
            log.exception("marking commits dispatched failed; the sweeper will publish them again",
                          extra={"tenant": tenant, "positions": positions[:10]})
        self.release(tenant, *(commit for commit, _ in marks))
