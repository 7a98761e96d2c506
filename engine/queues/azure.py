"""The command queue on Azure Storage queues (`azure-storage-queue`); against Azurite in tests.

Mapping of the port (engine/queues/base.py) onto Azure Storage:

- `Message.id` is the Azure message id and `Message.receipt` its pop receipt. `complete` deletes with the pop
  receipt; `release` sets the visibility timeout to the delay with `update_message`, which issues a new pop
  receipt, so the receiver's own receipt is spent. A stale receipt (404 MessageNotFound or 400
  PopReceiptMismatch) is `MessageLost`.
- Visibility timeouts and delays are whole seconds on Azure: they are rounded up (a receive hides for at
  least 1 s).
- **Encoding.** A message is the command body as compact UTF-8 JSON, base64-encoded: exactly what the SDK's
  `TextBase64EncodePolicy` writes and what an Azure Functions queue trigger decodes with its default
  `messageEncoding` (base64). The adapter encodes and decodes itself rather than through the SDK's policies,
  so that one message that is not base64 cannot fail a whole `receive` (the SDK's decode policy raises for the
  batch): such a message goes to the poison queue at once. Plain JSON text (`{...}`, messageEncoding
  "none") is read as well. Queue clients passed in must therefore use no message encode/decode policy.
- Messages never expire (`time_to_live=-1`): a trigger is not silently dropped after Azure's default 7 days.
- **Poison.** The poison queue is `{name}-poison`, the name the Functions host uses. A message received more
  than `max_dequeue_count` times is copied to it (with its original id, delivery count, time and reason, in a
  small JSON envelope) and only then deleted from the main queue, so nothing is lost. Messages the Functions
  host moved there (verbatim, no envelope) are listed too, under their poison-queue id.
  `poisoned()` peeks, and Azure lets a reader see at most 32 messages of a queue without taking them, so it
  lists at most the first 32 (sorted oldest first); `requeue_poisoned`/`discard_poisoned` find a message
  anywhere in the poison queue by receiving it (the others scanned past are hidden for a moment and put back).
  A requeued message is a new Azure message (a new id) with the same body: the trigger id inside the body is
  what keeps processing idempotent.
- Every other `azure.core` error (connection refused, timeouts, 5xx, 403, a missing queue) becomes
  `StoreUnavailable("command queue", ...)`, raised from the SDK error. The clients built here retry twice
  about a second apart, not the SDK's default of about a minute, so an unreachable account fails fast and the
  command stays where it is.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential, TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import LinearRetry, QueueClient, QueueMessage

from engine.domain.errors import CommandTooLarge, StoreUnavailable
from engine.queues.base import Message, MessageLost, check_receive, dump_body

__all__ = [
    "MAX_BODY_BYTES",
    "POISON_SUFFIX",
    "AzureStorageCommandQueue",
    "MessageTooLarge",
    "decode_body",
    "encode_body",
]

_STORE = "command queue"
_log = logging.getLogger(__name__)

POISON_SUFFIX = "-poison"
# Azure Storage refuses a message over 64 KiB; base64 makes 3 bytes 4. The rest is room for the poison envelope.
_MAX_MESSAGE_CHARS = 64 * 1024
MAX_BODY_BYTES = 47 * 1024
# A command held through an outage comes back with a small `hold` object (engine/service/holding.py): it may use
# some of the room kept for the poison envelope, so a command the API accepted can always be held.
_HOLD_ROOM = 512
_MAX_BATCH = 32  # Azure's limit for one receive or peek
_MAX_VISIBILITY_SECONDS = 7 * 24 * 3600
_NEVER_EXPIRES = -1
_SCAN_HIDE_SECONDS = 30  # how long requeue/discard hide the poison messages they scan past (they are put back)
_POISON_KEY = "waymarkPoison"
_LOST_CODES = frozenset({"MessageNotFound", "PopReceiptMismatch"})
# 3..56 characters, so that "{name}-poison" is still a valid queue name (at most 63).
_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,54}[a-z0-9]")

Credential = str | AzureNamedKeyCredential | AzureSasCredential | TokenCredential


class MessageTooLarge(CommandTooLarge, ValueError):
    """A command body too large for one Azure Storage message (64 KiB after base64: about 47 KiB of JSON). The API
    answers it with 413 (`CommandTooLarge`)."""

    def __init__(self, queue: str, size: int) -> None:
        super().__init__(queue, size, MAX_BODY_BYTES)


def encode_body(text: str) -> str:
    """JSON text as message content: base64 of its UTF-8 (what TextBase64EncodePolicy writes)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_body(content: object) -> dict[str, Any] | None:
    """The JSON object in a message's content, base64-encoded or plain; None if there is none."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(content, str):
        return None
    text = content.strip()
    if not text.startswith("{"):  # base64 text never starts with "{", a JSON object always does
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def default_client_options() -> dict[str, Any]:
    """Retry twice about a second apart and time out in seconds: an unreachable account fails fast
    (the SDK's defaults retry for about a minute), and the command simply stays queued."""
    return {
        "retry_policy": LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
        "connection_timeout": 10,
        "read_timeout": 30,
    }


class AzureStorageCommandQueue:
    """The `CommandQueue` port on one Azure Storage queue and its `{name}-poison` queue.

    Build it from settings with `from_connection_string` or `from_account_url` (one per process: the clients
    hold a connection pool), or from a `QueueClient` you configured (with no message encode/decode policy).
    `poison_queue` defaults to a client of `{name}-poison` on the same account with the same credential; pass
    one when the credential cannot reach it (a SAS scoped to one queue). `create_queues` creates both queues
    when missing; leave it off where infrastructure creates them (the Function app: a failure at import would
    stop the host from indexing its functions).
    """

    def __init__(
        self,
        queue: QueueClient,
        *,
        poison_queue: QueueClient | None = None,
        max_dequeue_count: int = 5,
        create_queues: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        name = queue.queue_name
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"queue name {name!r} must be 3 to 56 lowercase letters, digits or single hyphens, starting and "
                f"ending with a letter or digit (so that {name + POISON_SUFFIX!r} is a valid queue name too)"
            )
        if max_dequeue_count < 1:
            raise ValueError(f"max_dequeue_count must be at least 1, not {max_dequeue_count}")
        _require_no_message_policy(queue)
        if poison_queue is not None:
            _require_no_message_policy(poison_queue)
        self.name = name
        self.poison_name = name + POISON_SUFFIX
        self.max_dequeue_count = max_dequeue_count
        self._clock = clock
        self._queue = queue
        self._poison = poison_queue if poison_queue is not None else _sibling(queue, self.poison_name)
        self._where = f"{urlsplit(queue.url).netloc}"
        if create_queues:
            self.create_queues()

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        queue_name: str,
        *,
        max_dequeue_count: int = 5,
        create_queues: bool = False,
        **client_options: Any,
    ) -> AzureStorageCommandQueue:
        """From a storage connection string (Azurite's, or an account key's). `client_options` go to the SDK
        clients (e.g. `retry_policy`, `connection_timeout`) over `default_client_options()`."""
        options = {**default_client_options(), **client_options}
        return cls(
            QueueClient.from_connection_string(conn_str, queue_name, **options),
            poison_queue=QueueClient.from_connection_string(conn_str, queue_name + POISON_SUFFIX, **options),
            max_dequeue_count=max_dequeue_count,
            create_queues=create_queues,
        )

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        queue_name: str,
        credential: Credential | None,
        *,
        max_dequeue_count: int = 5,
        create_queues: bool = False,
        **client_options: Any,
    ) -> AzureStorageCommandQueue:
        """From the queue service URL (`https://{account}.queue.core.windows.net`, the `__queueServiceUri`
        setting) and a credential: a `DefaultAzureCredential` (managed identity), an account key, a SAS."""
        options = {**default_client_options(), **client_options}
        return cls(
            QueueClient(account_url, queue_name, credential=credential, **options),
            poison_queue=QueueClient(account_url, queue_name + POISON_SUFFIX, credential=credential, **options),
            max_dequeue_count=max_dequeue_count,
            create_queues=create_queues,
        )

    # --- the port --------------------------------------------------------------------------------------------

    def send(self, body: Mapping[str, Any], *, delay: float = 0.0) -> str:
        text = dump_body(body)
        size = len(text.encode("utf-8"))
        if size > MAX_BODY_BYTES + (_HOLD_ROOM if "hold" in body else 0):
            raise MessageTooLarge(self.name, size)
        visibility = _whole_seconds(delay, minimum=0) if delay > 0 else None
        with self._translated(f"send to queue {self.name!r}"):
            sent = self._queue.send_message(
                encode_body(text), visibility_timeout=visibility, time_to_live=_NEVER_EXPIRES
            )
        return str(sent.id)

    def receive(self, *, max_messages: int = 1, visibility_timeout: float = 30.0) -> list[Message]:
        check_receive(max_messages, visibility_timeout)
        hide = _whole_seconds(visibility_timeout, minimum=1)
        received: list[Message] = []
        while len(received) < max_messages:
            wanted = max_messages - len(received)
            with self._translated(f"receive from queue {self.name!r}"):
                # Pages of up to 32 until `wanted` came or a page came back empty.
                batch = list(
                    self._queue.receive_messages(
                        messages_per_page=min(wanted, _MAX_BATCH), max_messages=wanted, visibility_timeout=hide
                    )
                )
            if not batch:
                break
            poisoned = 0
            for raw in batch:
                body = decode_body(raw.content)
                dequeue_count = raw.dequeue_count or 0
                if body is None:
                    self._move_to_poison(raw, None, "the message is not base64-encoded JSON (nor plain JSON)")
                    poisoned += 1
                elif dequeue_count > self.max_dequeue_count:
                    self._move_to_poison(raw, body, f"exceeded max dequeue count {self.max_dequeue_count}")
                    poisoned += 1
                else:
                    received.append(Message(str(raw.id), body, dequeue_count, str(raw.pop_receipt)))
            if not poisoned:
                break  # the queue gave all it had (or all we asked for)
        return received

    def complete(self, message: Message) -> None:
        self._require_receipt(message)
        with self._translated(f"complete message {message.id!r} of queue {self.name!r}", lost=message.id):
            self._queue.delete_message(message.id, message.receipt)

    def complete_many(self, messages: Sequence[Message]) -> list[Message]:
        """One DELETE per message (Azure Storage queues have no batch delete). Each is durable when it is answered,
        and it is sent after the commits of the batch were stored."""
        lost = []
        for message in messages:
            try:
                self.complete(message)
            except MessageLost:
                lost.append(message)
        return lost

    def release(self, message: Message, *, delay: float = 0.0) -> None:
        self._require_receipt(message)
        with self._translated(f"release message {message.id!r} of queue {self.name!r}", lost=message.id):
            # The new pop receipt this returns is dropped on purpose: the receiver has let go.
            self._queue.update_message(
                message.id, message.receipt, visibility_timeout=_whole_seconds(delay, minimum=0)
            )

    def depth(self) -> int:
        """Azure's approximate count of the messages in the queue, held and delayed ones included."""
        with self._translated(f"read the properties of queue {self.name!r}"):
            properties = self._queue.get_queue_properties()
        return int(properties.approximate_message_count or 0)

    def poisoned(self, *, limit: int = 100) -> list[Message]:
        """The first (at most 32: all Azure shows without taking them) poison messages, oldest first."""
        if limit < 1:
            return []
        with self._translated(f"peek at queue {self.poison_name!r}"):
            peeked = list(self._poison.peek_messages(max_messages=min(limit, _MAX_BATCH)))
        listed = sorted((self._read_poisoned(raw) for raw in peeked), key=lambda entry: entry[0])
        return [message for _, message in listed][:limit]

    def requeue_poisoned(self, message_id: str) -> None:
        """Send the message's body to the main queue again (a new Azure message, dequeue count 0), then delete
        it from the poison queue: a failure in between leaves a copy in both, never in neither."""
        raw = self._take_poisoned(message_id)
        if raw is None:
            raise KeyError(f"no poisoned message {message_id!r} in queue {self.poison_name!r}")
        envelope = _envelope_of(raw)
        if envelope is not None and isinstance(envelope.get("body"), dict):
            content = encode_body(dump_body(envelope["body"]))
        else:
            content = raw.content  # as the Functions host moved it: put back exactly what was there
        with self._translated(f"requeue message {message_id!r} to queue {self.name!r}"):
            self._queue.send_message(content, time_to_live=_NEVER_EXPIRES)
        self._delete_poison(raw)

    def discard_poisoned(self, message_id: str) -> None:
        raw = self._take_poisoned(message_id)
        if raw is not None:
            self._delete_poison(raw)
            _log.warning("discarded poisoned command message %s of queue %s", message_id, self.poison_name)

    def close(self) -> None:
        for client in (self._queue, self._poison):
            client.close()

    def __enter__(self) -> AzureStorageCommandQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- more than the port ----------------------------------------------------------------------------------

    def create_queues(self) -> None:
        """Create the queue and its poison queue if they do not exist."""
        for client in (self._queue, self._poison):
            with self._translated(f"create queue {client.queue_name!r}"), suppress(ResourceExistsError):
                client.create_queue()

    # --- inside ----------------------------------------------------------------------------------------------

    def _move_to_poison(self, raw: QueueMessage, body: dict[str, Any] | None, reason: str) -> None:
        """Copy first, then delete: if the delete fails the message is in both queues, never in neither."""
        deliveries = max((raw.dequeue_count or 0) - 1, 0)  # this receive did not hand it out
        content = raw.content
        if body is not None:
            envelope = {
                _POISON_KEY: {
                    "messageId": raw.id,
                    "dequeueCount": deliveries,
                    "poisonedAt": _timestamp(datetime.fromtimestamp(self._clock(), UTC)),
                    "insertedOn": _timestamp(raw.inserted_on) if raw.inserted_on else None,
                    "reason": reason,
                },
                "body": body,
            }
            wrapped = encode_body(json.dumps(envelope, ensure_ascii=False, separators=(",", ":")))
            if len(wrapped) <= _MAX_MESSAGE_CHARS:
                content = wrapped  # else (a foreign, oversized message): verbatim, as the Functions host does
        with self._translated(f"move message {raw.id!r} to queue {self.poison_name!r}"):
            self._poison.send_message(content, time_to_live=_NEVER_EXPIRES)
        with suppress(MessageLost), self._translated(f"delete poisoned message {raw.id!r} from queue {self.name!r}",
                                                     lost=str(raw.id)):
            self._queue.delete_message(raw.id, raw.pop_receipt)
        _log.warning(
            "command message %s of queue %s moved to %s after %d deliveries: %s",
            raw.id, self.name, self.poison_name, deliveries, reason,
        )

    def _read_poisoned(self, raw: QueueMessage) -> tuple[str, Message]:
        """(sort key, message) of a poison queue message, ours (enveloped) or the Functions host's (verbatim)."""
        envelope = _envelope_of(raw)
        if envelope is not None:
            meta = envelope[_POISON_KEY]
            body = envelope.get("body")
            return (
                str(meta.get("poisonedAt") or ""),
                Message(str(meta.get("messageId") or raw.id), body if isinstance(body, dict) else {},
                        int(meta.get("dequeueCount") or 0), ""),
            )
        # Moved by the Functions host after host.json's maxDequeueCount deliveries (assumed to equal ours).
        body = decode_body(raw.content)
        key = _timestamp(raw.inserted_on) if raw.inserted_on else ""
        shown = body if body is not None else {"undecodable": str(raw.content)}
        return key, Message(str(raw.id), shown, self.max_dequeue_count, "")

    def _take_poisoned(self, message_id: str) -> QueueMessage | None:
        """Receive the poison message `message_id` (by original or poison-queue id), holding it for a while;
        the ones scanned past are made visible again before this returns."""
        passed: list[QueueMessage] = []
        try:
            while True:
                with self._translated(f"receive from queue {self.poison_name!r}"):
                    batch = list(
                        self._poison.receive_messages(
                            messages_per_page=_MAX_BATCH, max_messages=_MAX_BATCH, visibility_timeout=_SCAN_HIDE_SECONDS
                        )
                    )
                if not batch:
                    return None
                for index, raw in enumerate(batch):
                    if self._read_poisoned(raw)[1].id == message_id or raw.id == message_id:
                        passed += batch[index + 1:]
                        return raw
                    passed.append(raw)
        finally:
            for raw in passed:
                # Best effort: one not put back here comes back by itself after _SCAN_HIDE_SECONDS.
                with suppress(AzureError):
                    self._poison.update_message(raw.id, raw.pop_receipt, visibility_timeout=0)

    def _delete_poison(self, raw: QueueMessage) -> None:
        with suppress(MessageLost), self._translated(f"delete message {raw.id!r} from queue {self.poison_name!r}",
                                                     lost=str(raw.id)):
            self._poison.delete_message(raw.id, raw.pop_receipt)

    def _require_receipt(self, message: Message) -> None:
        if not message.receipt:
            raise MessageLost(f"message {message.id!r} of queue {self.name!r} has no receipt: it is not held")

    @contextmanager
    def _translated(self, action: str, *, lost: str | None = None) -> Iterator[None]:
        try:
            yield
        except AzureError as e:
            code = _error_code(e)
            if lost is not None and code in _LOST_CODES:
                raise MessageLost(
                    f"message {lost!r} of queue {self.name!r} is no longer held by this receiver ({code})"
                ) from e
            raise StoreUnavailable(_STORE, f"cannot {action} at {self._where}: {_describe(e)}") from e


def _whole_seconds(seconds: float, *, minimum: int) -> int:
    return min(max(math.ceil(seconds), minimum), _MAX_VISIBILITY_SECONDS)


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC time, so that sorting the text sorts the times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _envelope_of(raw: QueueMessage) -> dict[str, Any] | None:
    decoded = decode_body(raw.content)
    if decoded is not None and isinstance(decoded.get(_POISON_KEY), dict):
        return decoded
    return None


def _error_code(error: AzureError) -> str:
    """The storage error code ("PopReceiptMismatch"); the SDK gives a str enum or a str."""
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _describe(error: AzureError) -> str:
    status = getattr(error, "status_code", None)
    code = _error_code(error)
    first_line = (str(error.message) if error.message else str(error)).strip().splitlines()
    parts = [type(error).__name__]
    if status:
        parts.append(f"HTTP {status}")
    if code:
        parts.append(str(code))
    return " ".join(parts) + (f": {first_line[0]}" if first_line else "")


def _require_no_message_policy(client: QueueClient) -> None:
    """This adapter base64-encodes itself; a client that encodes again would write base64 of base64."""
    for attribute in ("_message_encode_policy", "_message_decode_policy"):
        policy = getattr(client, attribute, None)
        if policy is not None and type(policy).__name__ not in ("NoEncodePolicy", "NoDecodePolicy"):
            raise ValueError(
                f"the QueueClient of {client.queue_name!r} has {type(policy).__name__}: build it without "
                "message_encode_policy/message_decode_policy (this adapter encodes messages as base64 JSON itself)"
            )


def _sibling(queue: QueueClient, name: str) -> QueueClient:
    """A client of queue `name` on the same account, with the same credential (and SAS, if any)."""
    scheme, netloc, path, query, _ = urlsplit(queue.url)
    account_path = path.rstrip("/").rsplit("/", 1)[0]
    return QueueClient(
        urlunsplit((scheme, netloc, account_path, query, "")),
        name,
        credential=queue.credential,
        **default_client_options(),
    )
