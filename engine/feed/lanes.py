"""Delivery lanes: the threads that deliver the change feed, shared fairly between tenants and subscriptions.

Each (tenant, subscription) has a *lane*: a queue of delivery tasks served by threads of one bounded pool.

- **Per subscription** at most `per_lane` tasks run at once (the subscriber's in-flight requests), and only one
  while it *struggles* (its last `struggle_after` attempts all failed): a dead receiver is probed, not hammered.
- **Per tenant** at most `per_tenant` tasks run at once over all its lanes. A lane that wants a thread while its
  tenant is at the cap waits for one of that tenant's runners to finish, never for another tenant's: a tenant
  whose receivers are slow or tarpits holds at most `per_tenant` of the pool's `threads`.
- **Retries wait off the threads**: `later(delay, …)` puts a task back in its lane after `delay` seconds (a timer
  thread holds it meanwhile), so a failed delivery waiting for its next attempt holds back neither the tasks
  behind it in its lane nor anyone's thread.
- A lane holds at most `limit` tasks (waiting or scheduled); `push` refuses more (the caller leaves the work to
  the outbox sweeper) instead of growing without bound.
- Runners take turns of `turn` tasks, then go to the back of the pool's queue (or hand their tenant's slot to a
  waiting lane of the same tenant), so a busy lane does not starve the others.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = ["LaneKey", "Lanes"]

log = logging.getLogger("waymark.feed")

LaneKey = tuple[str, str]  # (tenant, subscription name)
Task = Callable[[], None]


@dataclass(eq=False)
class _Lane:
    tasks: deque[Task] = field(default_factory=deque)
    runners: int = 0  # tasks of this lane running now (pool threads serving it)
    scheduled: int = 0  # tasks waiting on the timer for their retry
    waiting: bool = False  # listed in its tenant's queue for a thread


class Lanes:
    def __init__(self, *, threads: int = 32, per_tenant: int = 16, per_lane: int = 8, limit: int = 10_000,
                 turn: int = 32, struggle_after: int = 5, monotonic: Callable[[], float] = time.monotonic) -> None:
        if min(threads, per_tenant, per_lane, limit, turn, struggle_after) < 1:
            raise ValueError("every bound of the delivery lanes must be at least 1")
        self.per_tenant = per_tenant
        self.per_lane = per_lane
        self.limit = limit
        self.turn = turn
        self.struggle_after = struggle_after
        self.monotonic = monotonic
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="waymark-feed")
        self._lock = threading.Lock()
        self._lanes: dict[LaneKey, _Lane] = {}
        self._tenants: dict[str, int] = {}  # runners per tenant
        self._queued: dict[str, deque[LaneKey]] = {}  # lanes of a tenant at its cap, waiting for a runner
        self._failing: dict[LaneKey, int] = {}  # consecutive failed attempts per lane
        self._timer: list[tuple[float, int, LaneKey, Task]] = []
        self._sequence = itertools.count()
        self._timer_ready = threading.Condition(self._lock)
        self._closed = False
        self._timer_thread = threading.Thread(target=self._timer_loop, name="waymark-feed-retries", daemon=True)
        self._timer_thread.start()

    # -------------------------------------------------------------------------------------- what callers use

    def push(self, key: LaneKey, task: Task) -> bool:
        """Queue a task in its lane; False if the lane is full or the lanes are closed."""
        with self._lock:
            if self._closed:
                return False
            lane = self._lanes.setdefault(key, _Lane())
            if len(lane.tasks) + lane.scheduled >= self.limit:
                self._forget_if_idle(key, lane)
                return False
            lane.tasks.append(task)
            start = self._claim_runner(key, lane)
        return not start or self._start(key)

    def later(self, delay: float, key: LaneKey, task: Task) -> bool:
        """Put a task back in its lane after `delay` seconds (a retry); False once closed. A task already counted
        in its lane is never refused for a full lane."""
        with self._lock:
            if self._closed:
                return False
            self._lanes.setdefault(key, _Lane()).scheduled += 1
            heapq.heappush(self._timer, (self.monotonic() + max(0.0, delay), next(self._sequence), key, task))
            self._timer_ready.notify()
        return True

    def attempted(self, key: LaneKey, ok: bool) -> None:
        """Record how an attempt to the lane's subscriber went (for the one-runner rule of struggling lanes)."""
        with self._lock:
            if ok:
                self._failing.pop(key, None)
            else:
                self._failing[key] = self._failing.get(key, 0) + 1

    def struggling(self, key: LaneKey) -> bool:
        with self._lock:
            return self._failing.get(key, 0) >= self.struggle_after

    def busy(self, tenant: str) -> int:
        """Tasks of `tenant` running now."""
        with self._lock:
            return self._tenants.get(tenant, 0)

    def queued(self, key: LaneKey) -> int:
        """Tasks waiting in a lane (not running, not scheduled)."""
        with self._lock:
            lane = self._lanes.get(key)
            return len(lane.tasks) if lane is not None else 0

    def close(self) -> None:
        """Drop what waits (the outbox sweeper delivers it later) and let running tasks finish."""
        with self._lock:
            self._closed = True
            self._timer.clear()
            for lane in self._lanes.values():
                lane.tasks.clear()
            self._timer_ready.notify_all()
        self._timer_thread.join(timeout=1.0)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -------------------------------------------------------------------------------------- runners

    def _lane_cap(self, key: LaneKey) -> int:
        return 1 if self._failing.get(key, 0) >= self.struggle_after else self.per_lane

    def _claim_runner(self, key: LaneKey, lane: _Lane) -> bool:
        """(Under the lock.) Whether to start a runner for the lane now; counts it if so. A lane whose tenant is at
        its cap is queued for the tenant's next free runner."""
        if not lane.tasks or lane.runners >= self._lane_cap(key):
            return False
        tenant = key[0]
        if self._tenants.get(tenant, 0) >= self.per_tenant:
            if not lane.waiting:
                lane.waiting = True
                self._queued.setdefault(tenant, deque()).append(key)
            return False
        lane.runners += 1
        self._tenants[tenant] = self._tenants.get(tenant, 0) + 1
        return True

    def _start(self, key: LaneKey) -> bool:
        try:
            self._pool.submit(self._run, key)
        except RuntimeError:  # the pool is shut down: what is queued is left to the next sweeper
            with self._lock:
                self._release_runner(key)
            return False
        return True

    def _release_runner(self, key: LaneKey) -> list[LaneKey]:
        """(Under the lock.) A runner of `key` stops; returns the lanes to start a runner for (its tenant's slot
        goes to a lane of the same tenant that waits for one)."""
        tenant = key[0]
        lane = self._lanes.get(key)
        if lane is not None:
            lane.runners -= 1
            self._forget_if_idle(key, lane)
        left = self._tenants.get(tenant, 0) - 1
        if left > 0:
            self._tenants[tenant] = left
        else:
            self._tenants.pop(tenant, None)
        return self._wake(tenant)

    def _wake(self, tenant: str) -> list[LaneKey]:
        """(Under the lock.) Runners for the waiting lanes of `tenant`, as far as its cap allows."""
        started: list[LaneKey] = []
        queue = self._queued.get(tenant)
        while queue and self._tenants.get(tenant, 0) < self.per_tenant:
            key = queue.popleft()
            lane = self._lanes.get(key)
            if lane is None:
                continue
            lane.waiting = False
            if lane.tasks and self._claim_runner(key, lane):
                started.append(key)
        if queue is not None and not queue:
            del self._queued[tenant]
        return started

    def _forget_if_idle(self, key: LaneKey, lane: _Lane) -> None:
        if not lane.tasks and not lane.runners and not lane.scheduled and not lane.waiting:
            del self._lanes[key]

    def _run(self, key: LaneKey) -> None:
        for _ in range(self.turn):
            with self._lock:
                lane = self._lanes.get(key)
                if lane is None or not lane.tasks or self._closed or lane.runners > self._lane_cap(key):
                    wake = self._release_runner(key)
                    break
                task = lane.tasks.popleft()
            try:
                task()
            except Exception:
                log.exception("a delivery task failed unexpectedly", extra={"tenant": key[0], "subscription": key[1]})
        else:
            with self._lock:  # the turn is over: let a waiting lane of the tenant go first, or queue again
                lane = self._lanes.get(key)
                if self._queued.get(key[0]) and lane is not None:
                    lane.waiting = True
                    self._queued[key[0]].append(key)
                    wake = self._release_runner(key)
                else:
                    wake = [key]  # keeps its runner count: goes to the back of the pool's queue
        for other in wake:
            self._start(other)

    # -------------------------------------------------------------------------------------- the retry timer

    def _timer_loop(self) -> None:
        while True:
            start: list[LaneKey] = []
            with self._timer_ready:
                if self._closed:
                    return
                now = self.monotonic()
                while self._timer and self._timer[0][0] <= now:
                    _, _, key, task = heapq.heappop(self._timer)
                    lane = self._lanes.setdefault(key, _Lane())
                    lane.scheduled -= 1
                    lane.tasks.append(task)
                    if self._claim_runner(key, lane):
                        start.append(key)
                if not start:
                    wait = self._timer[0][0] - now if self._timer else None
                    self._timer_ready.wait(wait)
                    continue
            for key in start:
                self._start(key)
