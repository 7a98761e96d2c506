"""An in-process command queue: the fake for unit tests, with the same contract as the real ones.

Bodies are stored as JSON text, so what a receiver gets is what the SQLite and Azure queues would hand
back (a fresh dict each time; a body that is not JSON-serialisable fails at `send`, not later).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.queues.base import Message, MessageLost, check_receive, dump_body


@dataclass(slots=True)
class _Entry:
    id: str
    body: str  # JSON text
    visible_at: float
    dequeue_count: int = 0
    receipt: str = ""


class MemoryCommandQueue:
    """Thread-safe; `clock` is a monotonic clock in seconds (inject one to step time in tests)."""

    embedded = True  # see engine.stores.base.embedded

    def __init__(self, *, max_dequeue_count: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        if max_dequeue_count < 1:
            raise ValueError(f"max_dequeue_count must be at least 1, not {max_dequeue_count}")
        self.max_dequeue_count = max_dequeue_count
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order is enqueue order: a requeued poison message is inserted anew, at the back.
        self._messages: dict[str, _Entry] = {}
        self._poison: dict[str, tuple[_Entry, float, str]] = {}  # id -> (entry, poisoned_at, reason)

    def send(self, body: Mapping[str, Any], *, delay: float = 0.0) -> str:
        text = dump_body(body)
        message_id = uuid.uuid4().hex
        with self._lock:
            self._messages[message_id] = _Entry(message_id, text, self._clock() + max(delay, 0.0))
        return message_id

    def receive(self, *, max_messages: int = 1, visibility_timeout: float = 30.0) -> list[Message]:
        check_receive(max_messages, visibility_timeout)
        received: list[Message] = []
        with self._lock:
            now = self._clock()
            for entry in list(self._messages.values()):
                if len(received) == max_messages:
                    break
                if entry.visible_at > now:
                    continue
                if entry.dequeue_count >= self.max_dequeue_count:
                    del self._messages[entry.id]
                    self._poison[entry.id] = (entry, now, f"exceeded max dequeue count {self.max_dequeue_count}")
                    continue
                entry.dequeue_count += 1
                entry.receipt = uuid.uuid4().hex
                entry.visible_at = now + visibility_timeout
                received.append(Message(entry.id, json.loads(entry.body), entry.dequeue_count, entry.receipt))
        return received

    def complete(self, message: Message) -> None:
        with self._lock:
            self._held(message)
            del self._messages[message.id]

    def complete_many(self, messages: Sequence[Message]) -> list[Message]:
        lost = []
        with self._lock:
            for message in messages:
                try:
                    self._held(message)
                except MessageLost:
                    lost.append(message)
                    continue
                del self._messages[message.id]
        return lost

    def release(self, message: Message, *, delay: float = 0.0) -> None:
        with self._lock:
            entry = self._held(message)
            entry.visible_at = self._clock() + max(delay, 0.0)
            entry.receipt = ""  # the receiver has let go: its receipt is now stale, as in Azure

    def depth(self) -> int:
        with self._lock:
            return len(self._messages)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest message that is not visible yet becomes visible (None: there is none)."""
        with self._lock:
            now = self._clock()
            waiting = [entry.visible_at - now for entry in self._messages.values()
                       if entry.visible_at > now and not entry.receipt]
        return min(waiting, default=None)

    def poisoned(self, *, limit: int = 100) -> list[Message]:
        with self._lock:
            entries = sorted(self._poison.values(), key=lambda poisoned: poisoned[1])[:limit]
            return [Message(e.id, json.loads(e.body), e.dequeue_count, "") for e, _, _ in entries]

    def requeue_poisoned(self, message_id: str) -> None:
        with self._lock:
            try:
                entry, _, _ = self._poison.pop(message_id)
            except KeyError:
                raise KeyError(f"no poisoned message {message_id!r}") from None
            self._messages[message_id] = _Entry(message_id, entry.body, self._clock())

    def discard_poisoned(self, message_id: str) -> None:
        with self._lock:
            self._poison.pop(message_id, None)

    def close(self) -> None:
        """Nothing to release; here so every adapter can be closed the same way."""

    def __enter__(self) -> MemoryCommandQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _held(self, message: Message) -> _Entry:
        entry = self._messages.get(message.id)
        if entry is None or not message.receipt or entry.receipt != message.receipt:
            raise MessageLost(f"message {message.id!r} is no longer held by this receiver")
        return entry


