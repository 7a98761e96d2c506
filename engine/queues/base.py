"""The command queue port. Every adapter (memory, sqlite, azure storage) passes tests/contract/test_queue.py.

At-least-once: a received message is invisible for the visibility timeout and comes back unless it is
completed. Nothing is deleted before it is processed. A message received more than `max_dequeue_count`
times is moved to the poison queue instead of being handed out again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: dict[str, Any]
    dequeue_count: int
    receipt: str  # proves this receiver holds the message; stale after the visibility timeout


class MessageLost(Exception):
    """complete/release with a receipt that is no longer valid (the message was handed to another receiver)."""


class CommandQueue(Protocol):
    def send(self, body: Mapping[str, Any], *, delay: float = 0.0) -> str:
        """Enqueue a JSON-serialisable body; returns the message id."""
        ...

    def receive(self, *, max_messages: int = 1, visibility_timeout: float = 30.0) -> list[Message]:
        ...

    def complete(self, message: Message) -> None:
        """Delete a processed message. Raises MessageLost if the receipt is stale."""
        ...

    def complete_many(self, messages: Sequence[Message]) -> list[Message]:
        """Delete the processed messages of a batch (as one write where the queue can); returns those whose receipt
        was stale (MessageLost), which are left alone. A storage failure raises StoreUnavailable, and the
        messages not deleted come back after their visibility timeout."""
        ...

    def release(self, message: Message, *, delay: float = 0.0) -> None:
        """Make a message visible again after `delay` seconds (a retry). The receipt is spent: a later
        complete/release with the same message raises MessageLost (as Azure issues a new pop receipt)."""
        ...

    def close(self) -> None:
        """Release connections. The queue is not used afterwards."""
        ...

    def depth(self) -> int:
        """Messages waiting (visible or not), poison excluded."""
        ...

    def poisoned(self, *, limit: int = 100) -> list[Message]:
        """Messages moved to the poison queue, oldest first (receipt is "")."""
        ...

    def requeue_poisoned(self, message_id: str) -> None:
        """Put a poisoned message back on the queue with its body unchanged and its dequeue count reset."""
        ...

    def discard_poisoned(self, message_id: str) -> None:
        ...


def dump_body(body: Mapping[str, Any]) -> str:
    """A command body as the compact JSON text every adapter stores; refuses what is not a JSON object."""
    if not isinstance(body, Mapping):
        raise TypeError(f"a command body must be a JSON object, not {type(body).__name__}")
    return json.dumps(dict(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# orjson reads a body several times faster than the standard library, and the same, but for an integer beyond 64
# bits (a float to orjson) and what it refuses (a lone surrogate, NaN): a body with a run of 16 digits or more, or
# that orjson refuses, is read by the standard library.
_LONG_NUMBER = re.compile(r"\d{16}")


def load_body(text: str) -> dict[str, Any]:
    """A stored command body (`dump_body`'s text) read back."""
    if _LONG_NUMBER.search(text) is None:
        try:
            body: dict[str, Any] = orjson.loads(text)
            return body
        except orjson.JSONDecodeError:
            pass
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def check_receive(max_messages: int, visibility_timeout: float) -> None:
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, not {max_messages}")
    if visibility_timeout < 0:
        raise ValueError(f"visibility_timeout must not be negative, not {visibility_timeout}")
