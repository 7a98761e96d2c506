"""Fair command processing: one tenant's slow commands can never take every worker.

A tenant's definition is untrusted: its commands may be slow (an `http` action to a service that answers late, an
expression near its budget). Two bounds keep the other tenants flowing:

- **`TenantGate`**: at most `limit` commands of one tenant are processed at once in this process (by the local
  workers, or by the Azure queue function's concurrent invocations). A command whose tenant is at its limit waits
  for a slot only while the tenant's latest command started less than `wait` seconds ago (a tenant's own burst of
  fast commands, which finish in milliseconds); a tenant whose commands are slow is refused at once. A refused
  command is *deferred*: a copy goes back on the queue with a delay and the original is completed, as an outage
  hold does (engine/service/holding.py), so a deferral never counts as a failed delivery and never poisons a
  command. The copy joins the back of the queue, so the other tenants' commands go first, and carries how often it
  was deferred (`"deferred": n`): the delay doubles each time (1 s, 2 s, 4 s … at most 30 s), so a tenant with a
  deep backlog of slow commands costs the workers a few deferrals a second, not one per command per second.
- **`BatchInProgress`** (the local worker): a worker receives a batch of up to 16 commands; while one of them is
  slow, the others would wait behind it. When a command has run `hand_back_after` seconds, the pool's watchdog
  hands back the unstarted rest of that worker's batch (copies re-sent at once, originals completed), so another
  worker takes them.

Both are in-process: on Azure each Functions instance has its own gate (the bound is per instance).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from engine.queues.base import CommandQueue, Message

__all__ = ["DEFER_SECONDS", "HAND_BACK_SECONDS", "MAX_DEFER_SECONDS", "WAIT_SECONDS", "BatchInProgress", "HandBack",
           "TenantGate", "default_tenant_workers", "deferred_body", "send_back", "tenant_of"]

log = logging.getLogger("waymark.fairness")

WAIT_SECONDS = 0.25  # how long a command waits for its tenant's slot before it is deferred
DEFER_SECONDS = 1.0  # how long a deferred command stays invisible the first time
MAX_DEFER_SECONDS = 30.0  # … and at most, however often it was deferred
DEFERRED_KEY = "deferred"
HAND_BACK_SECONDS = 1.0  # how long a command may hold up the rest of its worker's batch


def default_tenant_workers(workers: int) -> int:
    """Half the workers (rounded up), at least one: a single tenant keeps most of a pool's throughput, and at
    least half of it stays free for the others."""
    return max(1, (workers + 1) // 2)


class TenantGate:
    """At most `limit` commands of one tenant in processing at once. Thread-safe."""

    def __init__(self, limit: int, *, wait: float = WAIT_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"a tenant's concurrency limit must be at least 1, not {limit}")
        self.limit = limit
        self.wait = wait
        self.monotonic = monotonic
        self._busy: dict[str, int] = {}
        self._latest: dict[str, float] = {}  # when the tenant's latest command in progress started
        self._freed = threading.Condition()

    def enter(self, tenant: str, *, wait: float | None = None) -> bool:
        """Take one of the tenant's slots; False if none is free. While the tenant's latest command started less
        than `wait` seconds ago (default: the gate's), wait for one until then."""
        wait = self.wait if wait is None else wait
        with self._freed:
            while self._busy.get(tenant, 0) >= self.limit:
                left = self._latest.get(tenant, 0.0) + wait - self.monotonic()
                if left <= 0:
                    return False
                self._freed.wait(left)
            self._busy[tenant] = self._busy.get(tenant, 0) + 1
            self._latest[tenant] = self.monotonic()
            return True

    def leave(self, tenant: str) -> None:
        with self._freed:
            left = self._busy.get(tenant, 0) - 1
            if left > 0:
                self._busy[tenant] = left
            else:
                self._busy.pop(tenant, None)
                self._latest.pop(tenant, None)
            self._freed.notify_all()

    @contextmanager
    def slot(self, tenant: str | None) -> Iterator[bool]:
        """`with gate.slot(tenant) as entered:` — a command naming no tenant is never held back."""
        if tenant is None:
            yield True
            return
        entered = self.enter(tenant)
        try:
            yield entered
        finally:
            if entered:
                self.leave(tenant)

    def busy(self, tenant: str) -> int:
        with self._freed:
            return self._busy.get(tenant, 0)


def tenant_of(body: Mapping[str, Any]) -> str | None:
    tenant = body.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def deferred_body(body: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """The copy of a deferred command (its deferral count one higher) and how long it stays invisible."""
    count = body.get(DEFERRED_KEY)
    count = count if isinstance(count, int) and count >= 0 else 0
    return {**body, DEFERRED_KEY: count + 1}, min(MAX_DEFER_SECONDS, DEFER_SECONDS * 2 ** min(count, 16))


def send_back(queue: CommandQueue, messages: Sequence[Message], *, why: str, defer: bool = True) -> list[Message]:
    """Put copies of `messages` back on the queue: deferred (`deferred_body`), or visible at once and unchanged;
    returns the originals whose copy was sent, to be completed by the caller (a copy that could not be sent leaves
    its original to come back after its visibility timeout: nothing is lost, a command is at worst processed twice
    and deduplicated by its id)."""
    sent: list[Message] = []
    for message in messages:
        body, delay = deferred_body(message.body) if defer else (message.body, 0.0)
        try:
            queue.send(body, delay=delay)
        except Exception as e:
            log.warning("could not send a command back (%s): %s; it comes back after its visibility timeout", why, e,
                        extra={"messageId": message.id, "tenant": message.body.get("tenant")})
            continue
        sent.append(message)
    if sent:
        log.info("%d command(s) sent back (%s)", len(sent), why,
                 extra={"tenant": sent[0].body.get("tenant"), "messageId": sent[0].id})
    return sent


class BatchInProgress:
    """The messages of a worker's batch not started yet, which the watchdog may hand back while the worker is
    held up by a slow command. Thread-safe."""

    def __init__(self, messages: Sequence[Message], *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._messages = list(messages)
        self._next = 0
        self._busy_since: float | None = None
        self._lock = threading.Lock()
        self.monotonic = monotonic

    def unstarted(self) -> list[Message]:
        with self._lock:
            return self._messages[self._next:]

    def begin(self, count: int) -> bool:
        """The worker starts the next `count` messages; False when they were handed back meanwhile."""
        with self._lock:
            if self._next + count > len(self._messages):
                return False
            self._next += count
            self._busy_since = self.monotonic()
            return True

    def end(self) -> None:
        with self._lock:
            self._busy_since = None

    def take_if_stuck(self, after: float) -> list[Message]:
        """The unstarted rest, taken from the worker, when its current command has run `after` seconds."""
        with self._lock:
            since = self._busy_since
            if since is None or self.monotonic() - since < after or self._next >= len(self._messages):
                return []
            rest, self._messages = self._messages[self._next:], self._messages[:self._next]
            return rest


class HandBack:
    """The watchdog of a worker pool: every `every` seconds, the unstarted rest of each batch held up for
    `after` seconds by a slow command is sent back to the queue (copies visible at once, originals completed)."""

    def __init__(self, queue: CommandQueue, batches: Callable[[], Sequence[BatchInProgress | None]], *,
                 after: float = HAND_BACK_SECONDS, every: float = 0.1) -> None:
        self.queue = queue
        self.batches = batches
        self.after = after
        self.every = every

    def once(self) -> int:
        """One look at every batch; the number of messages handed back."""
        handed = 0
        for batch in self.batches():
            rest = batch.take_if_stuck(self.after) if batch is not None else []
            if not rest:
                continue
            sent = send_back(self.queue, rest, defer=False, why="handed back: a slow command held up its batch")
            handed += len(sent)
            try:
                self.queue.complete_many(sent)
            except Exception as e:  # the copies are queued: the originals come back and are deduplicated
                log.warning("could not complete the messages handed back: %s", e)
            for message in rest:
                if message not in sent:
                    with suppress(Exception):  # else it returns after its visibility timeout
                        self.queue.release(message)
        return handed

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            try:
                self.once()
            except Exception:
                log.exception("handing back held-up batches failed; trying again")
