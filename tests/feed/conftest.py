"""A real HTTP receiver on loopback for the change-feed tests, and engines wired to a change feed.

The receiver parses every POST with the `cloudevents` SDK itself (not with our helpers), answers the webhook
handshake (OPTIONS) as told per path, and can be scripted per path: a queue of replies (status, headers), a hold
(the request blocks until the test releases it), or a consent to give or refuse.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from engine.feed import ChangeFeed, MemorySubscriptionStore, RetryPolicy, WebhookPublisher
from engine.hosting.runtime import memory_engine
from engine.service.engine import Engine
from tests.webhook_receiver import Receiver, wait_until

ROOT = Path(__file__).resolve().parents[2]
TENANT = "acme"
ORIGIN = "waymark.test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def fast_webhook(**options: Any) -> WebhookPublisher:
    """Loopback allowed, retries in milliseconds."""
    options.setdefault("allow_private_destinations", True)
    options.setdefault("retry", RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.02, max_retry_after=5.0))
    options.setdefault("timeout", 5.0)
    return WebhookPublisher(origin=ORIGIN, **options)


@dataclass
class Rig:
    engine: Engine
    feed: ChangeFeed

    def drain(self, timeout: float = 10.0) -> None:
        assert self.feed.dispatcher.drain(timeout), "the dispatcher did not finish in time"

    def undispatched(self) -> list[int]:
        return [c.position or 0 for c in self.engine.events.undispatched(TENANT, limit=10_000)]


@pytest.fixture
def make_rig(expense_claim: dict[str, Any]) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(*, engine: Engine | None = None, subscriptions: Any = None, **options: Any) -> Rig:
        engine = engine or memory_engine()
        engine.catalog.put(TENANT, expense_claim)
        options.setdefault("webhook", fast_webhook())
        options.setdefault("tenants", lambda: [TENANT])
        options.setdefault("grace_seconds", 0.0)
        options.setdefault("cache_seconds", 0.0)
        feed = ChangeFeed(engine.events, subscriptions or MemorySubscriptionStore(), definitions=engine.catalog,
                          **options)
        engine.processor.on_commit = feed.on_commit
        rig = Rig(engine, feed)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.feed.close(timeout=1.0)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@contextmanager
def api_client(app: Any, **headers: str) -> Iterator[httpx.Client]:
    with serve(app) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        yield client
