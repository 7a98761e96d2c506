"""Webhooks against a real HTTP receiver on loopback: both modes, every event type, signatures, the handshake,
429/Retry-After, 410, 5xx retries, redirects, pausing and resuming, refused destinations, isolation."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.feed import (
    ALL_TYPES,
    SIGNATURE_HEADER,
    DestinationRefused,
    RetryPolicy,
    Subscription,
    SubscriptionStatus,
    WebhookPublisher,
    verify_signature,
)
from engine.feed.cloudevents import commit_events
from engine.feed.webhook import DestinationPolicy, retry_after_seconds
from tests.feed.conftest import ORIGIN, fast_webhook
from tests.feed.helpers import TENANT, claim_lifecycle, create, every_event_type, trigger
from tests.webhook_receiver import Receiver, Reply, wait_until

SECRET = "a-secret-of-at-least-16-chars"


def _all_ids(rig: Any) -> set[str]:
    commits = rig.engine.events.read_feed(TENANT, limit=1000)
    return {f"{e.instance_id}:{e.sequence}" for c in commits for e in c.events}


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_every_event_type_in_both_modes_signed(receiver: Receiver, make_rig: Any, mode: str) -> None:
    rig = make_rig()
    subscription, created = rig.feed.subscribe(TENANT, "dash", endpoint=receiver.url("/hook"), secret=SECRET,
                                               mode=mode)
    assert created and subscription.status is SubscriptionStatus.ACTIVE
    every_event_type(rig.engine)
    rig.drain()

    assert receiver.ids("/hook") == _all_ids(rig)
    assert {e.get_type() for e in receiver.events("/hook")} == ALL_TYPES
    for request in receiver.requests("/hook"):
        assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER.lower()])
        assert not verify_signature("another-secret-entirely", request.body, request.headers[SIGNATURE_HEADER.lower()])
        if mode == "binary":
            assert request.headers["content-type"] == "application/json"
            assert request.headers["ce-id"] == request.event.get_id()
            assert request.headers["ce-tenantid"] == TENANT
        else:
            assert request.headers["content-type"] == "application/cloudevents+json"
            assert not any(name.startswith("ce-") for name in request.headers)
    assert rig.undispatched() == []


def test_types_filter_and_no_secret_no_signature(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "faults", endpoint=receiver.url("/faults"),
                       types=["io.waymark.workflow.instance.faulted", "io.waymark.workflow.instance.completed"])
    every_event_type(rig.engine)
    rig.drain()
    assert sorted(e.get_id() for e in receiver.events("/faults")) == ["claim-1:7", "f-1:2", "t-1:5"]
    assert all(SIGNATURE_HEADER.lower() not in r.headers for r in receiver.requests("/faults"))
    assert rig.undispatched() == []


@pytest.mark.parametrize(("consent", "active"), [(True, True), ("*", True), (False, False), ("evil.example", False)])
def test_handshake(receiver: Receiver, make_rig: Any, consent: bool | str, active: bool) -> None:
    receiver.path("/hook").consent = consent
    rig = make_rig()
    subscription, _ = rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    [options] = receiver.requests("/hook", method="OPTIONS")
    assert options.headers["webhook-request-origin"] == ORIGIN
    create(rig.engine, "c1")
    rig.drain()
    if active:
        assert subscription.status is SubscriptionStatus.ACTIVE and subscription.last_error is None
        assert receiver.ids("/hook") == {"c1:1"}
    else:
        assert subscription.status is SubscriptionStatus.PENDING
        assert "did not consent" in (subscription.last_error or "")
        assert receiver.requests("/hook") == []  # a non-consenting endpoint gets nothing
        # and nothing waits for it: it is owed nothing
        assert rig.undispatched() == []
        receiver.path("/hook").consent = True
        resumed = rig.feed.resume(TENANT, "hook")
        assert resumed.status is SubscriptionStatus.ACTIVE
        trigger(rig.engine, "c1", "update", "u1", amount=1)
        rig.drain()
        assert receiver.ids("/hook") == {"c1:2"}


def test_429_waits_for_retry_after(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    delays: list[float] = []
    rig.feed.dispatcher.on_retry = delays.append
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(429, {"Retry-After": "1"}))
    create(rig.engine, "c1")
    rig.drain()
    assert delays == [1.0]
    assert len(receiver.requests("/hook")) == 2 and receiver.ids("/hook") == {"c1:1"}
    assert rig.undispatched() == []
    assert rig.feed.subscription(TENANT, "hook").consecutive_failures == 0


def test_429_with_a_retry_after_too_long_leaves_the_commit_to_the_sweeper(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(429, {"Retry-After": "3600"}))
    create(rig.engine, "c1")
    rig.drain()
    assert len(receiver.requests("/hook")) == 1  # not retried now
    assert len(rig.undispatched()) == 1
    subscription = rig.feed.subscription(TENANT, "hook")
    assert subscription.consecutive_failures == 1 and "Retry-After" in (subscription.last_error or "")
    report = rig.feed.sweeper.sweep_once(wait=10)  # the receiver is fine again
    assert report.republished == 1 and rig.undispatched() == []
    assert receiver.ids("/hook") == {"c1:1"}


def test_retry_after_as_seconds_or_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_5xx_and_transport_errors_are_retried_with_backoff(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=fast_webhook(retry=RetryPolicy(attempts=4, base_delay=0.1, max_delay=0.3)))
    delays: list[float] = []
    rig.feed.dispatcher.on_retry = delays.append
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(500), Reply(503), Reply(502))
    create(rig.engine, "c1")
    rig.drain()
    assert len(receiver.requests("/hook")) == 4 and receiver.ids("/hook") == {"c1:1"}
    # exponential with jitter: each delay in [cap/2, cap], cap = 0.1, 0.2, 0.3 (max)
    assert len(delays) == 3
    for delay, cap in zip(delays, (0.1, 0.2, 0.3), strict=True):
        assert cap / 2 <= delay <= cap
    assert rig.undispatched() == []
    assert rig.feed.subscription(TENANT, "hook").consecutive_failures == 0


def test_410_marks_the_subscription_gone(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(410))
    create(rig.engine, "c1")
    rig.drain()
    assert len(receiver.requests("/hook")) == 1  # stopped at once, no retry
    gone = rig.feed.subscription(TENANT, "hook")
    assert gone.status is SubscriptionStatus.GONE and "410" in (gone.last_error or "")
    create(rig.engine, "c2")
    rig.drain()
    assert len(receiver.requests("/hook")) == 1  # nothing more is sent
    assert rig.undispatched() == []  # and nothing waits for it
    assert rig.feed.resume(TENANT, "hook").status is SubscriptionStatus.ACTIVE
    create(rig.engine, "c3")
    rig.drain()
    assert "c3:1" in receiver.ids("/hook")


def test_redirects_are_not_followed(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", Reply(307, {"Location": receiver.url("/elsewhere")}))
    create(rig.engine, "c1")
    rig.drain()
    assert receiver.requests("/elsewhere") == []
    assert "a redirect (3xx), which is not followed" in (rig.feed.subscription(TENANT, "hook").last_error or "")
    assert len(rig.undispatched()) == 1


def test_pauses_after_n_failures_and_resume_delivers_the_backlog(receiver: Receiver, make_rig: Any) -> None:
    # one delivery at a time, so that which commit fails first is known
    rig = make_rig(webhook=fast_webhook(retry=RetryPolicy(attempts=1)), pause_after=2, lane_concurrency=1)
    rig.feed.subscribe(TENANT, "hook", endpoint=receiver.url("/hook"))
    receiver.script("/hook", *[Reply(500)] * 2)
    create(rig.engine, "c1")
    create(rig.engine, "c2")
    rig.drain()
    paused = rig.feed.subscription(TENANT, "hook")
    assert paused.status is SubscriptionStatus.PAUSED and paused.consecutive_failures == 2
    assert paused.backlog_from == 2  # c2's commit is owed; c1's failed before the pause and is undispatched
    assert rig.undispatched() == [1]
    claim_lifecycle(rig.engine, "c3")  # while paused: nothing is sent, nothing is lost
    rig.drain()
    assert len(receiver.requests("/hook")) == 2
    rig.feed.sweeper.sweep_once(wait=10)  # c1 is now owed too
    assert rig.undispatched() == []
    assert rig.feed.subscription(TENANT, "hook").backlog_from == 1

    resumed = rig.feed.resume(TENANT, "hook")  # the receiver is healthy again
    assert resumed.status is SubscriptionStatus.ACTIVE and resumed.consecutive_failures == 0
    rig.drain()
    assert receiver.ids("/hook") == _all_ids(rig)
    assert rig.feed.subscription(TENANT, "hook").backlog_from is None


def test_a_failing_subscriber_does_not_delay_another(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig()
    hold = receiver.path("/slow").hold = threading.Event()
    rig.feed.subscribe(TENANT, "slow", endpoint=receiver.url("/slow"))
    rig.feed.subscribe(TENANT, "fast", endpoint=receiver.url("/fast"))
    for n in range(5):
        claim_lifecycle(rig.engine, f"c{n}")  # the processor is not held up by the blocked subscriber
    everything = _all_ids(rig)
    wait_until(lambda: receiver.ids("/fast") == everything, what="the fast subscriber to get every event")
    assert receiver.ids("/slow") == set()  # still stuck on its first request
    assert rig.undispatched()  # those commits wait for the slow one
    hold.set()
    rig.drain(timeout=20)
    assert receiver.ids("/slow") == everything
    assert rig.undispatched() == []


# ---------------------------------------------------------------------------------------------- destinations

def _resolver(table: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        addresses = table[host]
        if callable(addresses):
            addresses = addresses()
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.5", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1",
                                     "224.0.0.1"])
def test_private_destinations_are_refused(address: str) -> None:
    policy = DestinationPolicy(resolve=_resolver({"hooks.example": [address]}))
    with pytest.raises(DestinationRefused, match="not a public address"):
        policy.check_url("https://hooks.example/hook")


def test_every_address_of_a_host_must_be_public() -> None:
    policy = DestinationPolicy(resolve=_resolver({"mixed.example": ["93.184.216.34", "10.0.0.1"],
                                                 "public.example": ["93.184.216.34", "2606:2800:220:1::1"]}))
    with pytest.raises(DestinationRefused):
        policy.check_url("https://mixed.example/")
    policy.check_url("https://public.example/")
    assert DestinationPolicy(allow_private=True, resolve=_resolver({"h": ["127.0.0.1"]})).addresses("h", 80)


def test_subscribing_a_loopback_endpoint_is_refused_by_default(receiver: Receiver, make_rig: Any) -> None:
    rig = make_rig(webhook=WebhookPublisher(origin=ORIGIN))
    for endpoint in (receiver.url("/hook"), f"http://localhost:{receiver.port}/hook", "ftp://example.org/x",
                     "http://user:pw@example.org/"):
        with pytest.raises(DestinationRefused):
            rig.feed.subscribe(TENANT, "hook", endpoint=endpoint)
    assert rig.feed.subscriptions(TENANT) == []
    assert receiver.requests(method="OPTIONS") == []


def test_the_check_is_made_on_the_addresses_connected_to(receiver: Receiver, expense_claim: Any) -> None:
    """DNS rebinding: the host looks public when checked, then resolves to loopback when connecting."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    resolve = _resolver({"rebind.example": lambda: next(answers)})
    webhook = WebhookPublisher(origin=ORIGIN, resolve=resolve, retry=RetryPolicy(attempts=1))
    try:
        webhook.check_destination(f"http://rebind.example:{receiver.port}/hook")  # first answer: public
        from engine.hosting.runtime import memory_engine

        engine = memory_engine()
        engine.catalog.put(TENANT, expense_claim)
        commit = create(engine, "c1")
        subscription = Subscription(name="x", endpoint=f"http://rebind.example:{receiver.port}/hook",
                                    status=SubscriptionStatus.ACTIVE)
        result = webhook.publish(subscription, commit_events(TENANT, commit, None))
        assert not result.ok and "not a public address" in (result.error or "")
        assert receiver.requests() == []
        # and the handshake goes through the same guard
        answers = iter([["127.0.0.1"]])
        handshake = webhook.handshake(f"http://rebind.example:{receiver.port}/hook")
        assert not handshake.consented and "not a public address" in handshake.detail
    finally:
        webhook.close()
