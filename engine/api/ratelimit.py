"""Rate limits: token buckets per key and per client address, bounded in memory.

Hand-written rather than a library (`limits`, `slowapi`): what is needed is ~60 lines (a bucket is two floats),
in-process by design, and the check runs on the hot path of every request, where a decorator-based library
would add a dependency solve per request.

The limits are **per server process**: `waymark serve` is one process; on Azure every Functions instance keeps its
own buckets, so a tenant may send up to (instances x rate). That is a brake on one client's share of a process,
not a global quota.

    RateLimiter(rate, burst)    buckets by name; `take(name)` → 0.0 (allowed) or the seconds to wait
    RateLimits                  the API's two: per key (tenant or admin) and per client address
    client_address(scope, hops) the client's address, `hops` trusted proxies in front (X-Forwarded-For)
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from engine.api.problems import ApiProblem

__all__ = ["MAX_BUCKETS", "RateLimiter", "RateLimits", "TooManyRequests", "client_address"]

MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets by name: `rate` tokens a second up to `burst`; a request takes one. At most `max_buckets`
    are kept: past that the least recently used is forgotten (it comes back full), so no sequence of names can
    grow memory without bound. `rate` 0: no limit."""

    def __init__(self, rate: float, burst: float, *, max_buckets: int = MAX_BUCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name → (tokens, at)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def wait(self, name: str, *, take: bool = True) -> float:
        """0.0 when a token was there (taken, unless `take` is false), else the seconds until one will be."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            allowed = tokens >= 1.0
            if allowed and take:
                tokens -= 1.0
            self._buckets[name] = (tokens, now)
            if len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


class TooManyRequests(ApiProblem):
    def __init__(self, wait: float, detail: str) -> None:
        seconds = max(1, math.ceil(wait))
        super().__init__(429, "Too many requests", f"{detail} Retry after {seconds} s.", slug="too-many-requests",
                         headers={"Retry-After": str(seconds)}, retryAfter=seconds)


@dataclass(frozen=True)
class RateLimits:
    """`per_key`: every request of an authenticated key (one bucket per tenant, one for the admin key).
    `per_address`: failed authentications (no key, an unknown key, a failed dashboard login) by client address;
    while an address's bucket is empty, its requests that would need a key lookup get 429 before the lookup."""

    per_key: RateLimiter
    per_address: RateLimiter
    hops: int = 0  # trusted proxies in front that append to X-Forwarded-For

    @classmethod
    def off(cls) -> RateLimits:
        return cls(RateLimiter(0, 1), RateLimiter(0, 1))

    def address(self, scope: Scope) -> str:
        return client_address(scope, self.hops)

    def check_key(self, name: str) -> None:
        wait = self.per_key.wait(name)
        if wait:
            raise TooManyRequests(wait, f"This key sent more than {self.per_key.rate:g} requests a second "
                                        f"(bursts of {self.per_key.burst:g}) to this server.")

    def check_address(self, address: str) -> None:
        """Raise TooManyRequests while the address has no attempt left (nothing is taken)."""
        wait = self.per_address.wait(address, take=False)
        if wait:
            raise TooManyRequests(wait, f"Too many failed authentications from {address}.")

    def failed(self, address: str) -> None:
        self.per_address.wait(address)


def client_address(scope: Scope, hops: int = 0) -> str:
    """The client's address: with `hops` trusted proxies in front, the X-Forwarded-For entry that many from the
    right (each proxy appends the address it was called from); else the connecting address. Ports are dropped
    (App Service sends `1.2.3.4:5678`). "unknown" when there is none."""
    if hops > 0:
        forwarded: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                forwarded += [part.strip() for part in value.decode("latin-1").split(",")]
        if len(forwarded) >= hops and forwarded[-hops]:
            return _without_port(forwarded[-hops])
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _without_port(address: str) -> str:
    if address.startswith("["):  # [v6]:port
        return address[1:address.find("]")] if "]" in address else address
    if address.count(":") == 1:  # v4:port
        return address.split(":", 1)[0]
    return address[:100]
