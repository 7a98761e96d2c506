"""`http` actions and conditions through the real httpx port against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.domain import Outcome, Services, Trigger
from engine.hosting.runtime import memory_engine
from engine.outbound import DestinationPolicy, OutboundClient
from engine.service.commands import CreateInstance
from engine.service.http_port import HttpxPort


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": json.loads(body) if body else None})
                status, answer = receiver.answers.pop(0) if receiver.answers else (200, None)
                payload = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_http_action_calls_the_service_and_applies_its_answer(receiver: Receiver) -> None:
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))  # the receiver is on loopback
    engine = memory_engine(services=Services(http=port))
    engine.catalog.put("t", {"id": "pay", "initialState": "due", "states": {
        "due": {"transitions": [{"id": "pay", "trigger": "pay", "target": "paid", "actions": [
            {"type": "http", "url": f"{receiver.url}/payments", "body": "{'claim': instance.id, 'amount': context.amount}",
             "headers": {"X-Source": "waymark"}, "retries": 1, "backoffSeconds": 0}]}]},
        "paid": {}}})
    engine.processor.create(CreateInstance("t", "c-1", "pay", "create", context={"amount": 12.5}))
    receiver.answers = [(200, {"setContext": {"paymentId": "p-9"}, "removeContext": ["amount"]})]
    result = engine.processor.trigger("t", "c-1", Trigger("pay", "p"))
    port.close()
    assert result.outcome is Outcome.APPLIED
    assert result.instance.context == {"paymentId": "p-9"}
    (request,) = receiver.requests
    assert request["body"] == {"claim": "c-1", "amount": 12.5}
    assert request["headers"]["Idempotency-Key"] == "c-1:2:$.states.due.transitions[0].actions[0]"
    assert request["headers"]["X-Source"] == "waymark"
    # (Retries go back on the queue: tests/integration/test_http_retries.py.)


def test_an_unreachable_service_faults_the_instance(receiver: Receiver) -> None:
    url = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))  # the receiver is on loopback
    engine = memory_engine(services=Services(http=port))
    engine.catalog.put("t", {"id": "check", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "go", "trigger": "go", "target": "a", "conditions": [{"type": "http", "url": f"{url}/rules", "retries": 0}]}]}}})
    engine.processor.create(CreateInstance("t", "i", "check", "create"))
    result = engine.processor.trigger("t", "i", Trigger("go", "g"))
    port.close()
    assert result.outcome is Outcome.FAULTED
    assert result.instance.fault is not None
    assert result.instance.fault.error_type == "HttpTransportError"
