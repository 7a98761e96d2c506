"""`auth: {"type": "managedIdentity", "audience": …}` on `http` actions, conditions and webhook subscriptions: an Entra
token from a real azure-identity `ManagedIdentityCredential`, pointed (as App Service does, with IDENTITY_ENDPOINT and
IDENTITY_HEADER) at a token endpoint on loopback, cached per audience, sent to the destination."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.identity import ManagedIdentityCredential

from engine.domain import InvalidDefinition, Outcome, Services, Trigger, default_registry, parse_definition
from engine.feed import RetryPolicy, Subscription, SubscriptionStatus, WebhookPublisher
from engine.hosting.runtime import memory_engine
from engine.outbound import DestinationPolicy, ManagedIdentityTokens, OutboundClient
from engine.service.commands import CreateInstance
from engine.service.http_port import HttpxPort
from tests.webhook_receiver import Receiver, Reply

SECRET = "identity-header-secret"


class TokenEndpoint:
    """App Service's managed identity endpoint, as azure-identity calls it: GET ?api-version&resource, with
    X-IDENTITY-HEADER; answers a token per resource, and counts the requests."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                if self.headers.get("X-IDENTITY-HEADER") != SECRET:
                    self.send_response(401)
                    self.end_headers()
                    return
                resource = query["resource"][0]
                endpoint.asked.append(resource)
                body = json.dumps({"access_token": f"token-for-{resource}-{len(endpoint.asked)}",
                                   "expires_on": str(int(time.time()) + 3600), "resource": resource,
                                   "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ManagedIdentityTokens, TokenEndpoint]]:
    endpoint = TokenEndpoint()
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", SECRET)
    credential = ManagedIdentityCredential()
    yield ManagedIdentityTokens(credential), endpoint
    credential.close()
    endpoint.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _workflow(url: str, kind: str = "actions") -> dict[str, Any]:
    call = {"type": "http", "url": url, "retries": 0, "auth": {"type": "managedIdentity", "audience": "api://payments"}}
    if kind == "conditions":
        call["method"] = "POST"
    return {"id": "w", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "go", "trigger": "go", "target": "a", kind: [call]}]}}}


def test_an_action_sends_a_managed_identity_token_cached_per_audience(
        tokens: tuple[ManagedIdentityTokens, TokenEndpoint], receiver: Receiver) -> None:
    provider, endpoint = tokens
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)), tokens=provider)
    engine = memory_engine(services=Services(http=port))
    engine.catalog.put("t", _workflow(receiver.url("/pay")))
    engine.processor.create(CreateInstance("t", "i", "w", "c"))
    for n in range(3):
        assert engine.processor.trigger("t", "i", Trigger("go", f"g{n}")).outcome is Outcome.APPLIED
    port.close()
    sent = [request.headers["authorization"] for request in receiver.requests("/pay")]
    assert sent == ["Bearer token-for-api://payments-1"] * 3
    assert endpoint.asked == ["api://payments"], "one token, cached for the three calls"


def test_a_condition_and_a_webhook_authenticate_the_same_way(
        tokens: tuple[ManagedIdentityTokens, TokenEndpoint], receiver: Receiver) -> None:
    provider, _ = tokens
    receiver.script("/rule", Reply(200))
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)), tokens=provider)
    engine = memory_engine(services=Services(http=port))
    engine.catalog.put("t", _workflow(receiver.url("/rule"), "conditions"))
    engine.processor.create(CreateInstance("t", "i", "w", "c"))
    engine.processor.trigger("t", "i", Trigger("go", "g"))
    port.close()
    assert receiver.requests("/rule")[0].headers["authorization"].startswith("Bearer token-for-api://payments")
    webhook = WebhookPublisher(origin="o", allow_private_destinations=True, tokens=provider,
                               retry=RetryPolicy(attempts=1))
    try:
        subscription = Subscription(name="s", endpoint=receiver.url("/hook"), status=SubscriptionStatus.ACTIVE,
                                    auth_audience="api://dashboard")
        assert webhook.handshake(receiver.url("/hook"), audience="api://dashboard").consented
        from cloudevents.core.v1.event import CloudEvent

        event = CloudEvent({"id": "i:1", "source": "/t", "type": "io.waymark.workflow.instance.created",
                            "specversion": "1.0"}, {"x": 1})
        assert webhook.publish(subscription, [event]).ok
    finally:
        webhook.close()
    (options,) = receiver.requests("/hook", method="OPTIONS")
    (post,) = receiver.requests("/hook")
    assert options.headers["authorization"] == post.headers["authorization"]
    assert post.headers["authorization"].startswith("Bearer token-for-api://dashboard")


def test_without_an_identity_the_call_faults_and_is_not_retried(receiver: Receiver) -> None:
    port = HttpxPort(OutboundClient(DestinationPolicy(allow_private=True)))  # no tokens on this host
    engine = memory_engine(services=Services(http=port))
    engine.catalog.put("t", {**_workflow(receiver.url("/pay")), "id": "w"})
    engine.processor.create(CreateInstance("t", "i", "w", "c"))
    result = engine.processor.trigger("t", "i", Trigger("go", "g"))
    port.close()
    assert result.outcome is Outcome.FAULTED and result.instance.fault is not None
    assert "no managed identity to authenticate with" in result.instance.fault.message
    assert receiver.requests() == []


@pytest.mark.parametrize("auth", [{"type": "managedIdentity"}, {"type": "key", "audience": "x"}, "api://x",
                                  {"type": "managedIdentity", "audience": "a b"},
                                  {"type": "managedIdentity", "audience": "x", "extra": 1}])
def test_a_malformed_auth_is_refused_at_upload(auth: Any) -> None:
    document = _workflow("https://pay.example/x")
    document["states"]["a"]["transitions"][0]["actions"][0]["auth"] = auth
    with pytest.raises(InvalidDefinition, match="auth: must be"):
        parse_definition(document, default_registry())


def test_auth_and_an_authorization_header_do_not_go_together() -> None:
    document = _workflow("https://pay.example/x")
    document["states"]["a"]["transitions"][0]["actions"][0]["headers"] = {"Authorization": "Bearer mine"}
    with pytest.raises(InvalidDefinition, match="an Authorization header cannot be given with `auth`"):
        parse_definition(document, default_registry())
