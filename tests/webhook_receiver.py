"""A real HTTP receiver of webhooks on loopback, shared by every test folder that needs one.

It parses every POST with the `cloudevents` SDK itself (not with our helpers), answers the webhook handshake
(OPTIONS) as told per path, and can be scripted per path: a queue of replies (status, headers), a hold (the
request blocks until the test releases it), or a consent to give or refuse.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it is truthy (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Received:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    event: BaseCloudEvent | None
    status: int = 200  # what the receiver answered


@dataclass
class _Path:
    replies: deque[Reply] = field(default_factory=deque)
    consent: bool | str = True  # True: echo the request origin; a str: that value; False: no header
    hold: threading.Event | None = None
    held: int = 0  # requests waiting on the hold now
    most_held: int = 0  # the most that ever waited at once


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.paths: dict[str, _Path] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_OPTIONS(self) -> None:
                path, _, query = self.path.partition("?")
                conf = receiver.path(path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.record(Received("OPTIONS", path, query, headers, b"", None))
                allowed: dict[str, str] = {}
                if conf.consent is True:
                    allowed["WebHook-Allowed-Origin"] = headers.get("webhook-request-origin", "")
                elif isinstance(conf.consent, str):
                    allowed["WebHook-Allowed-Origin"] = conf.consent
                self._reply(Reply(200, allowed))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path, _, query = self.path.partition("?")
                conf = receiver.path(path)
                if conf.hold is not None:
                    with receiver.lock:
                        conf.held += 1
                        conf.most_held = max(conf.most_held, conf.held)
                    conf.hold.wait(20)
                    with receiver.lock:
                        conf.held -= 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    reply = conf.replies.popleft() if conf.replies else Reply()
                event = None
                if 200 <= reply.status < 300 and "aeg-sas-key" not in headers:
                    try:
                        event = from_http(HTTPMessage(headers, body), JSONFormat())
                    except Exception:  # not a CloudEvent (an `http` action's call, say): recorded as it came
                        event = None
                receiver.record(Received("POST", path, query, headers, body, event, reply.status))
                self._reply(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def path(self, path: str) -> _Path:
        with self.lock:
            return self.paths.setdefault(path, _Path())

    def script(self, path: str, *replies: Reply) -> None:
        conf = self.path(path)
        with self.lock:
            conf.replies.extend(replies)

    def record(self, received: Received) -> None:
        with self.lock:
            self.received.append(received)

    def requests(self, path: str | None = None, method: str = "POST") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.method == method and (path is None or r.path == path)]

    def events(self, path: str | None = None) -> list[BaseCloudEvent]:
        return [r.event for r in self.requests(path) if r.event is not None]

    def ids(self, path: str | None = None) -> set[str]:
        return {event.get_id() for event in self.events(path)}

    def close(self) -> None:
        for conf in list(self.paths.values()):
            if conf.hold is not None:
                conf.hold.set()
        self.server.shutdown()
        self.server.server_close()
