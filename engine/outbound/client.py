"""The HTTP client of every outbound call: the destination guard on the connected address, a total deadline, a
capped response body, and errors that name the destination and the class of failure, never the socket's words.

- **Guard**: a custom httpcore network backend resolves the host itself, checks every address
  (engine/outbound/guard.py) and connects to a checked one; TLS then starts with the original host name, so
  certificates are verified as usual. Redirects are not followed and environment proxies are not used.
- **Deadline**: one monotonic deadline per call covers the connection, the TLS handshake, sending, and every
  read of the answer's head and body: each socket operation gets at most the time left. httpx's own timeouts are
  per operation, so a server dripping a byte a second would hold the call forever; here it is cut when the
  deadline passes. (Resolving the name is the one step the deadline cannot cut.)
- **Body**: read as it comes, up to `max_body_bytes` (asked uncompressed: `Accept-Encoding: identity`; an encoded
  answer is refused rather than inflated).
- **Errors** (`OutboundError`, each with the destination and whether a retry may help): the destination refused
  by the guard, could not connect (refused, unreachable, TLS: one class, so that a fault cannot tell a closed port
  from a filtered one), no complete answer within the deadline, the connection broken mid-answer, an answer too
  large. The underlying error is logged for the operator, not shown to the tenant.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import certifi
import httpcore
import httpx

from engine.domain import WaymarkError
from engine.domain.extensions import destination_of
from engine.outbound.guard import DestinationPolicy, DestinationRefused

__all__ = ["OutboundClient", "OutboundError", "OutboundResponse"]

log = logging.getLogger("waymark.outbound")
_deadline: ContextVar[float | None] = ContextVar("waymark_outbound_deadline", default=None)


class OutboundError(WaymarkError):
    """A call that got no usable answer. `kind`: refused, connect, deadline, broken, too-large, invalid."""

    def __init__(self, destination: str, kind: str, message: str, *, retryable: bool) -> None:
        self.destination = destination
        self.kind = kind
        self.retryable = retryable
        super().__init__(f"{destination}: {message}")


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: httpx.Headers
    body: bytes


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the current call's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname,
                                                    _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks the host itself, then connects to one of the checked addresses."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.policy.addresses(host, port):
            try:
                stream = super().connect_tcp(address, port, _left(timeout, httpcore.ConnectTimeout), local_address,
                                             socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
                continue
            return _DeadlineStream(stream)
        assert last is not None
        raise last


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: DestinationPolicy, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx has no public hook for the network backend: replace the pool it built with one that uses ours
        # (same settings). tests/outbound/test_guard.py proves the guard is in force, so an upgrade breaking this
        # fails loudly rather than silently allowing private destinations.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_GuardedBackend(policy),
        )


class OutboundClient:
    """One connection pool for outbound calls, thread-safe. `send` is the only way out."""

    def __init__(self, policy: DestinationPolicy | None = None, *, max_connections: int = 64,
                 user_agent: str = "waymark") -> None:
        self.policy = policy or DestinationPolicy()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.client = httpx.Client(transport=_GuardedTransport(self.policy, limits=limits), follow_redirects=False,
                                   trust_env=False, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})

    def close(self) -> None:
        self.client.close()

    def send(self, method: str, url: str, *, deadline: float, max_body_bytes: int,
             headers: Mapping[str, str] | None = None, content: bytes | None = None, json: Any = None,
             body_required: bool = True) -> OutboundResponse:
        """Make one call within `deadline` seconds in all; raises OutboundError (DestinationRefused is one, of
        kind `refused`). With `body_required` false, an answer's body past `max_body_bytes` is left unread
        instead of failing the call."""
        destination = destination_of(url)
        token = _deadline.set(time.monotonic() + deadline)
        try:
            return self._send(method, url, destination, deadline, max_body_bytes, body_required,
                              headers=headers, content=content, json=json)
        except DestinationRefused as e:
            raise OutboundError(destination, "refused", f"the destination is refused: {e.reason}",
                                retryable=False) from e
        except OutboundError:
            raise
        except Exception as e:
            raise _classified(destination, deadline, e) from e
        finally:
            _deadline.reset(token)

    def _send(self, method: str, url: str, destination: str, deadline: float, max_body_bytes: int,
              body_required: bool, **request: Any) -> OutboundResponse:
        with self.client.stream(method, url, timeout=deadline, **request) as response:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise OutboundError(destination, "invalid", f"the answer is encoded ({encoding}), though "
                                    "Accept-Encoding: identity was asked", retryable=False)
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > max_body_bytes:
                    if not body_required:
                        break
                    raise OutboundError(destination, "too-large", f"the answer's body is larger than "
                                        f"{max_body_bytes:,} bytes", retryable=False)
            return OutboundResponse(response.status_code, response.headers, bytes(body))


def _classified(destination: str, deadline: float, error: Exception) -> OutboundError:
    log.info("outbound call to %s failed: %s: %s", destination, type(error).__name__, error)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return OutboundError(destination, "connect", "could not connect", retryable=True)
    if isinstance(error, httpx.TimeoutException):
        return OutboundError(destination, "deadline", f"no complete answer within {deadline:g} s", retryable=True)
    if isinstance(error, httpx.TransportError):
        return OutboundError(destination, "broken", "the connection failed before a complete answer",
                             retryable=True)
    return OutboundError(destination, "invalid", "the request could not be made", retryable=False)
