"""Driving function_app.py as the Functions host does: its functions listed once per process, invoked with real
`azure.functions` objects, and the host's side of the command queue (receive, invoke, complete on success) played
against Azurite.

What is emulated, and how faithfully:

- the HTTP function gets a `func.HttpRequest` with the URL, headers and body the host would pass (routePrefix "",
  so the URL path is the API path) and a `func.Context`; it is awaited on an event loop, as the worker does;
- the queue function gets an `azure.functions.queue.QueueMessage` — the class the worker builds from the host's
  trigger metadata — made from what Azurite returned to a receive: id, pop receipt, dequeue count, times, and the
  body base64-decoded (host.json `messageEncoding: base64`);
- `HostQueue.deliver` completes (deletes) the message when the function returns and leaves it alone when it
  raises, so Azurite shows it again after the receive's visibility timeout with a higher dequeue count. The real
  host also updates the visibility on failure (host.json `visibilityTimeout`) and moves a message past
  `maxDequeueCount` to `{queue}-poison` itself: that part of the host is not run here.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.queue import QueueMessage as HostQueueMessage  # what the worker builds
from azure.functions.timer import TimerRequest as HostTimerRequest
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as RawQueueMessage

ROOT = Path(__file__).resolve().parents[2]
HTTP_FUNCTION, QUEUE_FUNCTION, TIMER_FUNCTION = "http_app_func", "process_command", "sweep_outbox"


def function_app() -> ModuleType:
    return importlib.import_module("function_app")


@functools.cache
def functions() -> dict[str, Any]:
    """The app's functions by name. `get_functions()` keeps state and refuses a second call: once per process."""
    return {fn.get_function_name(): fn for fn in function_app().app.get_functions()}


class Invocation(func.Context):
    """The invocation context the worker passes (no trace or retry context here)."""

    def __init__(self, function_name: str) -> None:
        self._id = str(uuid.uuid4())
        self._name = function_name
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return str(ROOT)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, path: str, *, body: Any = None, key: str | None = None,
         headers: dict[str, str] | None = None) -> Response:
    """One request through the HTTP function's user code (the ASGI app behind `func.AsgiFunctionApp`)."""
    handler = functions()[HTTP_FUNCTION].get_user_function()
    data = b"" if body is None else json.dumps(body).encode()
    sent = {"host": "waymark.azurewebsites.net", **(headers or {})}
    if key is not None:
        sent["authorization"] = f"Bearer {key}"
    if data:
        sent["content-type"] = "application/json"
    url = f"https://waymark.azurewebsites.net{path}"
    request = func.HttpRequest(method, url, headers=sent, params=dict(parse_qsl(urlsplit(url).query)),
                               route_params={"route": urlsplit(url).path.lstrip("/")}, body=data)
    response: func.HttpResponse = asyncio.run(handler(request, Invocation(HTTP_FUNCTION)))
    return Response(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.get_body())


def host_message(raw: RawQueueMessage) -> HostQueueMessage:
    """What the worker hands the queue function for a message the host received."""
    return HostQueueMessage(id=str(raw.id), body=base64.b64decode(str(raw.content)), dequeue_count=raw.dequeue_count,
                            pop_receipt=raw.pop_receipt, insertion_time=raw.inserted_on,
                            expiration_time=raw.expires_on, time_next_visible=raw.next_visible_on)


def run_queue_function(message: func.QueueMessage) -> None:
    functions()[QUEUE_FUNCTION].get_user_function()(message)


def run_timer_function(*, past_due: bool = False) -> None:
    functions()[TIMER_FUNCTION].get_user_function()(HostTimerRequest(past_due=past_due))


@dataclass
class HostQueue:
    """The Functions host's side of the command queue, against Azurite."""

    connection_string: str
    queue_name: str
    visibility_timeout: int = 30
    failures: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Plain text in and out, as the host's own client: the content is the base64 the app wrote.
        self.client = QueueClient.from_connection_string(self.connection_string, self.queue_name)

    def receive(self, max_messages: int = 32) -> list[RawQueueMessage]:
        return list(self.client.receive_messages(max_messages=max_messages, messages_per_page=max_messages,
                                                 visibility_timeout=self.visibility_timeout))

    def deliver(self, raw: RawQueueMessage) -> bool:
        """Invoke the queue function; complete the message when it returns (True), leave it when it raises."""
        try:
            run_queue_function(host_message(raw))
        except Exception as e:
            self.failures.append(e)
            return False
        self.client.delete_message(raw.id, raw.pop_receipt)
        return True

    def deliver_all(self) -> int:
        """Receive and deliver until the queue shows nothing; how many were completed."""
        done = 0
        while batch := self.receive():
            done += sum(self.deliver(raw) for raw in batch)
        return done

    def depth(self) -> int:
        return int(self.client.get_queue_properties().approximate_message_count or 0)

    def close(self) -> None:
        self.client.close()
