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
- **Destinations**: unless `allow_private_destinations`, an endpoint whose host resolves to any address that is
  not globally routable (loopback, private, link-local, CGNAT, multicast, reserved, unspecified, and IPv4-mapped
  forms of those) is refused. The check is made when connecting, on the very addresses the socket then connects
  to (a custom httpcore network backend), so DNS rebinding between a check and the connection cannot slip
  through. Environment proxies are ignored for the same reason.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import ipaddress
import random
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import certifi
import httpcore
import httpx
from cloudevents.core.base import BaseCloudEvent

from engine.domain import WaymarkError
from engine.feed.cloudevents import binary_message, structured_message
from engine.feed.subscriptions import Mode, Subscription

__all__ = [
    "SIGNATURE_HEADER", "DeliveryResult", "DestinationPolicy", "DestinationRefused", "Handshake", "RetryPolicy",
    "WebhookPublisher", "retry_after_seconds", "sign", "verify_signature",
]

SIGNATURE_HEADER = "X-Waymark-Signature"
ORIGIN_REQUEST_HEADER = "WebHook-Request-Origin"
ORIGIN_ALLOWED_HEADER = "WebHook-Allowed-Origin"
USER_AGENT = "waymark-feed/0.1"

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


# ---------------------------------------------------------------------------------------------- destinations

class DestinationRefused(WaymarkError):
    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"destination {endpoint!r} is refused: {reason}")


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_unspecified


Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class DestinationPolicy:
    """Which hosts webhooks may be sent to. Every address a host resolves to must be allowed, not just one."""

    def __init__(self, *, allow_private: bool = False, resolve: Resolver = socket.getaddrinfo) -> None:
        self.allow_private = allow_private
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, all checked; raises DestinationRefused."""
        host = host.strip("[]")
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise DestinationRefused(host, f"the host cannot be resolved ({e})") from e
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise DestinationRefused(host, "the host resolves to no address")
        if not self.allow_private:
            for address in addresses:
                if _refused_address(ipaddress.ip_address(address)):
                    raise DestinationRefused(host, f"it resolves to {address}, which is not a public address "
                                                   "(private, loopback and link-local destinations are not allowed)")
        return addresses

    def check_url(self, endpoint: str) -> None:
        """Refuse an endpoint that is not an absolute http(s) URL or whose host is not allowed."""
        try:
            url = httpx.URL(endpoint)
        except httpx.InvalidURL as e:
            raise DestinationRefused(endpoint, f"it is not a valid URL ({e})") from e
        if url.scheme not in ("http", "https") or not url.host:
            raise DestinationRefused(endpoint, "it is not an absolute http(s) URL")
        if url.userinfo:
            raise DestinationRefused(endpoint, "credentials in the URL are not allowed; use the secret")
        try:
            self.addresses(url.host, url.port or (443 if url.scheme == "https" else 80))
        except DestinationRefused as e:
            raise DestinationRefused(endpoint, e.reason) from None


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks the host itself, then connects to one of the checked addresses. TLS is started by
    httpcore afterwards with the original host name, so certificates are verified against the name as usual."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.policy.addresses(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
        assert last is not None
        raise last


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: DestinationPolicy, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx has no public hook for the network backend: replace the pool it built with one that uses ours
        # (same settings). tests/feed/test_webhook.py proves the guard is in force, so an upgrade breaking this
        # fails loudly rather than silently allowing private destinations.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_GuardedBackend(policy),
        )


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
                 resolve: Resolver = socket.getaddrinfo) -> None:
        self.origin = origin
        self.policy = DestinationPolicy(allow_private=allow_private_destinations, resolve=resolve)
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.now = now
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        transport: httpx.BaseTransport = (httpx.HTTPTransport(trust_env=False, limits=limits)
                                          if allow_private_destinations else _GuardedTransport(self.policy,
                                                                                               limits=limits))
        self.client = httpx.Client(transport=transport, follow_redirects=False, timeout=timeout, trust_env=False,
                                   headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self.client.close()

    def check_destination(self, endpoint: str) -> None:
        self.policy.check_url(endpoint)

    # -------------------------------------------------------------------------------------- handshake

    def handshake(self, endpoint: str) -> Handshake:
        try:
            response = self.client.options(endpoint, headers={ORIGIN_REQUEST_HEADER: self.origin})
        except DestinationRefused as e:
            return Handshake(False, str(e))
        except httpx.HTTPError as e:
            return Handshake(False, f"the validation request (OPTIONS {endpoint}) failed: {type(e).__name__}: {e}")
        allowed = (response.headers.get(ORIGIN_ALLOWED_HEADER) or "").strip()
        if response.is_success and allowed in (self.origin, "*"):
            return Handshake(True, f"consent given by {endpoint} ({ORIGIN_ALLOWED_HEADER}: {allowed})")
        if not response.is_success:
            why = f"it answered {response.status_code}"
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

    def publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        """One attempt: deliver `events` in order, stopping at the first that fails. Never raises, never waits
        to retry: the result says how many were delivered and whether (and when) the rest may be tried again —
        the outbox schedules that retry without holding a thread (engine/feed/lanes.py)."""
        for index, event in enumerate(events):
            headers, body = self.message(subscription, event)
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
            response = self.client.post(endpoint, content=body, headers=headers)
        except DestinationRefused as e:
            return _Attempt(error=str(e))
        except httpx.TransportError as e:
            return _Attempt(retry=True, error=f"{type(e).__name__} sending to {endpoint}: {e}")
        except httpx.HTTPError as e:
            return _Attempt(error=f"{type(e).__name__} sending to {endpoint}: {e}")
        status = response.status_code
        if response.is_success:
            return _Attempt(ok=True)
        if status == 410:
            return _Attempt(gone=True, error=f"{endpoint} answered 410 Gone: it wants no more events")
        if response.is_redirect or 300 <= status < 400:
            location = response.headers.get("Location", "?")
            return _Attempt(error=f"{endpoint} answered {status} (to {location}); redirects are not followed")
        error = f"{endpoint} answered {status}"
        if status in _RETRY_STATUSES:
            wait = retry_after_seconds(response.headers.get("Retry-After"), self.now()) if status in (429, 503) \
                else None
            return _Attempt(retry=True, retry_after=wait, error=error)
        return _Attempt(error=error)
