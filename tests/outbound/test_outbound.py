"""Outbound calls are safe by construction (engine/outbound): one guard, one total deadline, a capped answer.

Webhooks, `http` actions and `http` conditions all go through `OutboundClient`; each SSRF target is refused for
each of them (the guard configured to refuse private destinations, a real receiver on loopback that must never
be reached), a server dripping one byte a second is cut at the deadline, a big answer at the cap, and faults name
the destination and the class of failure, never the socket's words or the status code.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.domain import Outcome, Services, Trigger
from engine.feed import RetryPolicy, Subscription, SubscriptionStatus, WebhookPublisher
from engine.hosting.runtime import memory_engine
from engine.outbound import DestinationPolicy, OutboundClient, OutboundError, refusal
from engine.service.commands import CreateInstance
from engine.service.http_port import HttpxPort
from engine.service.results import Result
from tests.webhook_receiver import Receiver, Reply

# Each target the guard must refuse, as a host name resolves to it (one address each).
SSRF_TARGETS = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.5.5", "192.168.0.10", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fd00::1", "fc00::1",
    "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::7f00:1", "::ffff:0:7f00:1",
    "64:ff9b::7f00:1", "64:ff9b::808:808", "2002:7f00:1::1", "2001::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "::ffff:8.8.8.8"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _resolving(table: dict[str, str]) -> Callable[..., list[tuple[Any, ...]]]:
    """A resolver where each name resolves to one address; an unknown name is an error."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        address = table[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


# ------------------------------------------------------------------------------------------- the ranges


@pytest.mark.parametrize("address", SSRF_TARGETS)
def test_every_internal_range_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


# ------------------------------------------------------------------------------------------- each caller


def _action_engine(url: str, client: OutboundClient, kind: str = "action", **spec: Any) -> Result:
    port = HttpxPort(client)
    engine = memory_engine(services=Services(http=port))
    call = {"type": "http", "url": url, "retries": 0, **spec}
    transition: dict[str, Any] = {"id": "go", "trigger": "go", "target": "b"}
    transition["actions" if kind == "action" else "conditions"] = [call]
    engine.catalog.put("t", {"id": "w", "initialState": "a", "states": {"a": {"transitions": [transition]},
                                                                        "b": {}}})
    engine.processor.create(CreateInstance("t", "i", "w", "create"))
    return engine.processor.trigger("t", "i", Trigger("go", "g"))


@pytest.mark.parametrize("caller", ["action", "condition", "webhook"])
@pytest.mark.parametrize("target", SSRF_TARGETS)
def test_each_ssrf_target_is_refused_for_each_caller(receiver: Receiver, caller: str, target: str) -> None:
    """The name resolves to the target; the receiver listening on loopback must never see a request."""
    resolve = _resolving({"target.example": target})
    url = f"http://target.example:{receiver.port}/hook"
    message = _call(caller, url, DestinationPolicy(resolve=resolve))
    assert "refused" in message and "not a public address" in message, message
    assert target not in message  # what a name resolves to is never told
    assert receiver.requests() == [] and receiver.requests(method="OPTIONS") == []


@pytest.mark.parametrize("caller", ["action", "condition", "webhook"])
def test_a_loopback_url_is_refused_and_reached_only_when_private_destinations_are_allowed(
        receiver: Receiver, caller: str) -> None:
    for url in (receiver.url("/hook"), f"http://localhost:{receiver.port}/hook"):
        message = _call(caller, url, DestinationPolicy())
        assert "not a public address" in message, message
    assert receiver.requests() == []
    receiver.script("/hook", Reply(200))
    assert _call(caller, receiver.url("/hook"), DestinationPolicy(allow_private=True)) == "ok"
    assert len(receiver.requests("/hook")) == 1


def _call(caller: str, url: str, policy: DestinationPolicy) -> str:
    """Make one call as `caller` would; "ok" or the error it reports."""
    if caller == "webhook":
        webhook = WebhookPublisher(origin="waymark.test", allow_private_destinations=policy.allow_private,
                                   resolve=policy.resolve, retry=RetryPolicy(attempts=1))
        try:
            subscription = Subscription(name="x", endpoint=url, status=SubscriptionStatus.ACTIVE)
            result = webhook.publish(subscription, [_event()])
            return "ok" if result.ok else str(result.error)
        finally:
            webhook.close()
    client = OutboundClient(policy)
    try:
        done = _action_engine(url, client, caller)
    finally:
        client.close()
    if done.outcome is Outcome.FAULTED:
        assert done.instance.fault is not None
        return done.instance.fault.message
    return "ok"


def _event() -> Any:
    from cloudevents.core.v1.event import CloudEvent

    return CloudEvent({"id": "i:1", "source": "/tenants/t", "type": "io.waymark.workflow.instance.created",
                       "specversion": "1.0"}, {"x": 1})


# ------------------------------------------------------------------------------------------- deadline, body


class Tarpit:
    """Accepts, reads the request, then answers one byte a second for as long as the client stays."""

    def __init__(self, *, head_first: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.head_first = head_first
        self.stop = threading.Event()
        self.cut = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.drip, args=(conn,), daemon=True).start()

    def drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            payload = (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" if self.head_first else b"") + \
                b"H" * 100_000
            for byte in payload:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    self.cut.set()
                    return
                if self.stop.wait(1.0):
                    return
            self.cut.set()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("head_first", [False, True], ids=["dripping-head", "dripping-body"])
def test_a_tarpit_is_cut_at_the_deadline(head_first: bool) -> None:
    tarpit = Tarpit(head_first=head_first)
    client = OutboundClient(DestinationPolicy(allow_private=True))
    try:
        with pytest.raises(OutboundError) as caught:
            client.send("GET", f"http://127.0.0.1:{tarpit.port}/slow", deadline=2.0, max_body_bytes=1_000_000)
        assert caught.value.kind == "deadline" and caught.value.retryable
        assert str(caught.value) == f"http://127.0.0.1:{tarpit.port}/slow: no complete answer within 2 s"
        assert tarpit.cut.wait(5), "the connection was closed, so the tarpit's thread is freed too"
    finally:
        client.close()
        tarpit.close()


@pytest.mark.parametrize("caller", ["action", "webhook"])
def test_a_tarpit_faults_an_action_and_fails_a_delivery(caller: str) -> None:
    tarpit = Tarpit(head_first=False)
    url = f"http://127.0.0.1:{tarpit.port}/slow"
    try:
        if caller == "webhook":
            webhook = WebhookPublisher(origin="o", allow_private_destinations=True, timeout=1.5,
                                       retry=RetryPolicy(attempts=1))
            try:
                result = webhook.publish(Subscription(name="x", endpoint=url, status=SubscriptionStatus.ACTIVE),
                                         [_event()])
            finally:
                webhook.close()
            assert not result.ok and "no complete answer within 1.5 s" in str(result.error)
        else:
            client = OutboundClient(DestinationPolicy(allow_private=True))
            try:
                outcome = _action_engine(url, client, timeoutSeconds=1.5)
            finally:
                client.close()
            assert outcome.outcome is Outcome.FAULTED and outcome.instance.fault is not None
            assert outcome.instance.fault.message == f"POST {url}: no complete answer within 1.5 s"
    finally:
        tarpit.close()


def test_the_answer_body_is_capped(receiver: Receiver) -> None:
    big = BigAnswer(2_000_000)
    client = OutboundClient(DestinationPolicy(allow_private=True))
    try:
        with pytest.raises(OutboundError, match="larger than 1,000 bytes") as caught:
            client.send("GET", big.url, deadline=10, max_body_bytes=1_000)
        assert caught.value.kind == "too-large" and not caught.value.retryable
        small = client.send("GET", big.url, deadline=10, max_body_bytes=5_000_000)
        assert len(small.body) == 2_000_000
        port = HttpxPort(client, max_body_bytes=1_000)
        engine = memory_engine(services=Services(http=port))
        engine.catalog.put("t", {"id": "w", "initialState": "a", "states": {"a": {"transitions": [
            {"id": "go", "trigger": "go", "target": "a", "actions": [{"type": "http", "url": big.url,
                                                                       "retries": 3}]}]}}})
        engine.processor.create(CreateInstance("t", "i", "w", "create"))
        result = engine.processor.trigger("t", "i", Trigger("go", "g"))
        assert result.outcome is Outcome.FAULTED and result.instance.fault is not None
        assert "larger than 1,000 bytes" in result.instance.fault.message
        assert big.calls == 3, "an answer too large is not retried"
    finally:
        client.close()
        big.close()


class BigAnswer:
    def __init__(self, size: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.calls += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may hang up at its cap
                    self.wfile.write(b"x" * size)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/big"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------- manners


def test_redirects_are_not_followed_and_statuses_are_named_by_class(receiver: Receiver) -> None:
    other = Receiver()
    try:
        receiver.script("/hook", Reply(302, {"Location": other.url("/elsewhere")}))
        client = OutboundClient(DestinationPolicy(allow_private=True))
        try:
            result = _action_engine(receiver.url("/hook"), client)
        finally:
            client.close()
        assert result.instance.fault is not None
        assert result.instance.fault.message == f"POST {receiver.url('/hook')} answered with a redirect (3xx), " \
                                                "which is not followed"
        assert other.requests() == []
        receiver.script("/hook", Reply(503))
        client = OutboundClient(DestinationPolicy(allow_private=True))
        try:
            failed = _action_engine(receiver.url("/hook") + "?token=secret", client)
        finally:
            client.close()
        assert failed.instance.fault is not None
        assert failed.instance.fault.message == f"POST {receiver.url('/hook')} answered with a server error (5xx)"
    finally:
        other.close()


def test_environment_proxies_are_not_used(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Receiver()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        client = OutboundClient(DestinationPolicy(allow_private=True))
        try:
            client.send("POST", receiver.url("/direct"), deadline=5, max_body_bytes=100, content=b"{}")
        finally:
            client.close()
        assert len(receiver.requests("/direct")) == 1 and proxy.requests() == []
    finally:
        proxy.close()


def test_a_closed_port_is_named_as_a_class_not_a_socket_error() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = OutboundClient(DestinationPolicy(allow_private=True))
    try:
        result = _action_engine(f"http://127.0.0.1:{port}/x", client)
    finally:
        client.close()
    assert result.instance.fault is not None
    assert result.instance.fault.message == f"POST http://127.0.0.1:{port}/x: could not connect"


def test_the_guard_is_in_force_on_the_connected_address(receiver: Receiver) -> None:
    """DNS rebinding: a name checked as public, then resolving to loopback when connecting, is refused there."""
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    policy = DestinationPolicy(resolve=resolve)
    policy.check_url(f"http://rebind.example:{receiver.port}/hook")
    client = OutboundClient(policy)
    try:
        with pytest.raises(OutboundError, match="not a public address") as caught:
            client.send("POST", f"http://rebind.example:{receiver.port}/hook", deadline=5, max_body_bytes=100)
        assert caught.value.kind == "refused" and not caught.value.retryable
    finally:
        client.close()
    assert receiver.requests() == []
