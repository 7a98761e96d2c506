"""The webhook publisher: CloudEvents over HTTP (httpx), with the CloudEvents webhook rules and our signature.

- **Modes**: structured (`Content-Type: application/cloudevents+json`, the whole event in the body) or binary
  (`ce-*` headers, `data` as the `application/json` body), one event per request, built by the SDK's HTTP binding.
- **Abuse protection** (CloudEvents "HTTP 1.1 Web Hooks for Event Delivery", section 4): before a subscription
  becomes active, `OPTIONS {endpoint}` with `WebHook-Request-Origin: {origin}`; the endpoint consents with a 2xx
  whose `WebHook-Allowed-Origin` is our origin or `*`. Anything else (no header, another origin, 405, a redirect,
  no answer) is a refusal and the subscription stays `pending`. The asynchronous `WebHook-Request-Callback` flow
  is not offered: it needs a callback route on our side for little gain (a receiver can always answer the
  OPTIONS itself).
- **Signature**: with a secret, `X-Waymark-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes
  under the subscription's secret (`verify_signature` below is how a subscriber checks it). No timestamp header:
  a replayed request is indistinguishable from the at-least-once redelivery every subscriber must already absorb
  (dedupe on the event id), so a timestamp would add a clock check and no protection. In binary mode only the
  body (`data`) is signed, which is why `data` repeats `instanceId` and `sequence`; use structured mode to have
  every attribute covered.
- **Retries**: transport errors, timeouts, 408, 425, 429 and 5xx are *retryable*; `publish` makes one attempt and
  says so, and the outbox tries again on its own schedule (engine/feed/outbox.py, `RetryPolicy`): up to
  `RetryPolicy.attempts` attempts with exponential backoff and jitter (a delay drawn from [cap/2, cap], cap =
  base·2^(n-1) ≤ max_delay), or, after a 429 or 503 with `Retry-After` (seconds or an HTTP-date), that long;
  longer than `max_retry_after` and the delivery gives up at once (the commit stays undispatched and the sweeper
  tries later). No thread waits meanwhile, and the events behind a failed one are not held back. 410 stops at
  once: the subscription is `gone`. Other 4xx and any 3xx fail at once: redirects are never followed.
- **Destinations, deadline, answer**: every request goes through the outbound client shared with `http` actions and
  conditions (engine/outbound): the destination guard on the connected address (unless private destinations are
  allowed, local mode), no redirects, no environment proxies, one total deadline per request (`timeout`: connect,
  send and every read, so a subscriber dripping its answer cannot hold a delivery thread), and at most
  `MAX_ANSWER_BYTES` of an answer read (the rest is left unread: a webhook's answer body means nothing).
- **Errors** name the endpoint and the class of failure (refused, could not connect, no answer in time, a server
  error (5xx) …), never the socket's own words nor the exact status, so a subscription's error cannot be used to
  probe a network.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import hmac
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.base import BaseCloudEvent

from engine.feed.cloudevents import binary_message, structured_message
from engine.feed.subscriptions import Mode, Subscription
from engine.outbound import (
    DestinationPolicy,
    DestinationRefused,
    ManagedIdentityTokens,
    OutboundClient,
    OutboundError,
    OutboundResponse,
    Resolver,
    TokenUnavailable,
    destination_of,
    status_class,
)

__all__ = [
    "SIGNATURE_HEADER", "DeliveryResult", "DestinationPolicy", "DestinationRefused", "Handshake", "RetryPolicy",
    "WebhookPublisher", "retry_after_seconds", "sign", "verify_signature",
]

SIGNATURE_HEADER = "X-Waymark-Signature"
ORIGIN_REQUEST_HEADER = "WebHook-Request-Origin"
ORIGIN_ALLOWED_HEADER = "WebHook-Allowed-Origin"
USER_AGENT = "waymark-feed/0.1"
MAX_ANSWER_BYTES = 65_536  # of a subscriber's answer, read and ignored

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a subscriber does: recompute over the raw body bytes and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


# ---------------------------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        cap = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return rng.uniform(cap / 2, cap)

    def next_attempt(self, result: DeliveryResult, attempt: int,
                     rng: random.Random) -> tuple[float | None, DeliveryResult]:
        """When to try a failed delivery again after attempt `attempt` (None: not again now), and the result to
        count if not."""
        if result.ok or result.gone or not result.retryable or attempt >= self.attempts:
            return None, result
        if result.retry_after is None:
            return self.backoff(attempt, rng), result
        if result.retry_after > self.max_retry_after:
            return None, dataclasses.replace(result, error=(
                f"{result.error}; Retry-After of {result.retry_after:.0f}s is beyond the "
                f"{self.max_retry_after:.0f}s a delivery waits"))
        return result.retry_after, result


@dataclass(frozen=True, slots=True)
class Handshake:
    consented: bool
    detail: str


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt to deliver a commit's events did. On a failure, the first `delivered` events got through;
    `retryable` says the rest may be tried again (after `retry_after` seconds when the receiver said so)."""

    ok: bool
    gone: bool = False
    error: str | None = None
    attempts: int = 0  # requests made
    delivered: int = 0
    retryable: bool = False
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Attempt:
    ok: bool = False
    gone: bool = False
    retry: bool = False
    retry_after: float | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------- the publisher

class WebhookPublisher:
    """Sends CloudEvents to webhook subscriptions. Thread-safe: one httpx client (a connection pool) shared by
    every delivery thread. `retry` is the policy the outbox follows for its deliveries."""

    def __init__(self, *, origin: str = "waymark", allow_private_destinations: bool = False, timeout: float = 10.0,
                 retry: RetryPolicy | None = None, rng: random.Random | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), max_connections: int = 64,
                 resolve: Resolver = socket.getaddrinfo, tokens: ManagedIdentityTokens | None = None) -> None:
        self.origin = origin
        self.policy = DestinationPolicy(allow_private=allow_private_destinations, resolve=resolve)
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.now = now
        self.timeout = timeout
        self.tokens = tokens  # for subscriptions with `auth` (the app's managed identity)
        self.client = OutboundClient(self.policy, max_connections=max_connections, user_agent=USER_AGENT)

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, endpoint: str, **request: Any) -> OutboundResponse:
        return self.client.send(method, endpoint, deadline=self.timeout, max_body_bytes=MAX_ANSWER_BYTES,
                                body_required=False, **request)

    def check_destination(self, endpoint: str) -> None:
        self.policy.check_url(endpoint)

    # -------------------------------------------------------------------------------------- handshake

    def handshake(self, endpoint: str, *, audience: str | None = None) -> Handshake:
        try:
            headers = {ORIGIN_REQUEST_HEADER: self.origin, **self.authorization(endpoint, audience)}
            response = self._call("OPTIONS", endpoint, headers=headers)
        except (OutboundError, TokenUnavailable) as e:
            return Handshake(False, f"the validation request (OPTIONS) failed: {e}")
        allowed = (response.headers.get(ORIGIN_ALLOWED_HEADER) or "").strip()
        success = 200 <= response.status < 300
        if success and allowed in (self.origin, "*"):
            return Handshake(True, f"consent given by {endpoint} ({ORIGIN_ALLOWED_HEADER}: {allowed})")
        if not success:
            why = f"it answered with {status_class(response.status)}"
        elif not allowed:
            why = f"its answer has no {ORIGIN_ALLOWED_HEADER} header"
        else:
            why = f"{ORIGIN_ALLOWED_HEADER} is {allowed!r}, not {self.origin!r} or '*'"
        return Handshake(False, f"the endpoint did not consent to receive events (OPTIONS {endpoint}): {why}")

    # -------------------------------------------------------------------------------------- delivery

    def message(self, subscription: Subscription, event: BaseCloudEvent) -> tuple[dict[str, str], bytes]:
        """The headers and body one event is sent with."""
        built = binary_message(event) if subscription.mode is Mode.BINARY else structured_message(event)
        headers = dict(built.headers)
        if subscription.secret:
            headers[SIGNATURE_HEADER] = sign(subscription.secret, built.body)
        return headers, built.body

    def authorization(self, endpoint: str, audience: str | None) -> dict[str, str]:
        """`Authorization: Bearer <token>` of the app's managed identity when the subscription has `auth`."""
        if audience is None:
            return {}
        if self.tokens is None:
            raise TokenUnavailable(audience, "this host has no managed identity to authenticate with",
                                   retryable=False)
        return {"Authorization": f"Bearer {self.tokens.token(audience)}"}

    def publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        """One attempt: deliver `events` in order, stopping at the first that fails. Never raises, never waits
        to retry: the result says how many were delivered and whether (and when) the rest may be tried again —
        the outbox schedules that retry without holding a thread (engine/feed/lanes.py)."""
        try:
            authorization = self.authorization(subscription.endpoint, subscription.auth_audience)
        except TokenUnavailable as e:
            return DeliveryResult(False, error=f"{destination_of(subscription.endpoint)}: {e}", attempts=0,
                                  retryable=e.retryable)
        for index, event in enumerate(events):
            headers, body = self.message(subscription, event)
            headers.update(authorization)
            attempt = self._send(subscription.endpoint, headers, body)
            if attempt.ok:
                continue
            if attempt.gone:
                return DeliveryResult(False, gone=True, error=attempt.error, attempts=index + 1, delivered=index)
            return DeliveryResult(False, error=attempt.error, attempts=index + 1, delivered=index,
                                  retryable=attempt.retry, retry_after=attempt.retry_after)
        return DeliveryResult(True, attempts=len(events), delivered=len(events))

    def _send(self, endpoint: str, headers: dict[str, str], body: bytes) -> _Attempt:
        try:
            response = self._call("POST", endpoint, content=body, headers=headers)
        except OutboundError as e:
            return _Attempt(retry=e.retryable, error=str(e))
        status = response.status
        if 200 <= status < 300:
            return _Attempt(ok=True)
        if status == 410:
            return _Attempt(gone=True, error=f"{endpoint} answered 410 Gone: it wants no more events")
        error = f"{endpoint} answered with {status_class(status)}"
        if status in _RETRY_STATUSES:
            wait = retry_after_seconds(response.headers.get("Retry-After"), self.now()) if status in (429, 503) \
                else None
            return _Attempt(retry=True, retry_after=wait, error=error)
        return _Attempt(error=error)
