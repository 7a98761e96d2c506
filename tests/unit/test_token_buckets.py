"""Token buckets, client addresses and the authenticator's cache of unknown keys (engine/api/ratelimit.py,
engine/api/auth.py), on a clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.api import auth as auth_module
from engine.api.auth import Authenticator
from engine.api.ratelimit import RateLimiter, RateLimits, TooManyRequests, client_address
from engine.tenants import SqliteTenantRegistry, TenantRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 5, clock=clock)
    assert [limiter.wait("a") for _ in range(5)] == [0.0] * 5
    assert limiter.wait("a") == pytest.approx(0.5)  # one token comes every 1/rate seconds
    assert limiter.wait("b") == 0.0, "each name has its own bucket"
    clock.now += 0.5
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") == pytest.approx(0.5)
    clock.now += 100
    assert [limiter.wait("a") for _ in range(6)].count(0.0) == 5, "a bucket never holds more than its burst"


def test_peeking_takes_nothing_and_rate_zero_is_no_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.wait("a", take=False) == 0.0
    assert limiter.wait("a", take=False) == 0.0
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a", take=False) == pytest.approx(1.0)
    off = RateLimiter(0, 1, clock=clock)
    assert all(off.wait("a") == 0.0 for _ in range(1000)) and len(off) == 0


def test_buckets_are_bounded_and_the_least_recently_used_goes_first() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, max_buckets=100, clock=clock)
    limiter.wait("kept")
    for n in range(10_000):
        limiter.wait(f"address-{n}")
        if n % 50 == 0:
            assert limiter.wait("kept") > 0  # still there, still empty: used lately
    assert len(limiter) == 100


def test_too_many_requests_is_a_429_problem_with_retry_after_in_whole_seconds() -> None:
    limits = RateLimits(RateLimiter(1.0, 1, clock=Clock()), RateLimiter(1.0, 1))
    limits.check_key("acme")
    with pytest.raises(TooManyRequests) as raised:
        limits.check_key("acme")
    assert raised.value.status_code == 429 and raised.value.headers == {"Retry-After": "1"}
    assert "1 requests a second" in str(raised.value.detail)


@pytest.mark.parametrize(("headers", "client", "hops", "expected"), [
    ([], ("10.0.0.1", 5000), 0, "10.0.0.1"),
    ([(b"x-forwarded-for", b"6.6.6.6")], ("10.0.0.1", 5000), 0, "10.0.0.1"),  # no trusted proxy: ignored
    ([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7:51234")], None, 1, "203.0.113.7"),  # spoofed first entry
    ([(b"x-forwarded-for", b"203.0.113.7, 10.1.1.1")], None, 2, "203.0.113.7"),
    ([(b"x-forwarded-for", b"[2001:db8::1]:443")], None, 1, "2001:db8::1"),
    ([(b"x-forwarded-for", b"2001:db8::2")], None, 1, "2001:db8::2"),
    ([], None, 1, "unknown"),
    ([(b"x-forwarded-for", b"203.0.113.7")], ("10.0.0.1", 1), 2, "10.0.0.1"),  # fewer entries than proxies
])
def test_the_client_address(headers: list[tuple[bytes, bytes]], client: Any, hops: int, expected: str) -> None:
    assert client_address({"type": "http", "headers": headers, "client": client}, hops) == expected


class CountingRegistry(SqliteTenantRegistry):
    """The real SQLite registry, counting the key lookups that reach it."""

    lookups = 0

    def authenticate(self, key: str) -> TenantRecord | None:
        self.lookups += 1
        return super().authenticate(key)


def test_unknown_keys_are_refused_from_a_bounded_cache_for_a_while(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    registry = CountingRegistry(tmp_path / "tenants.db", secret="server-secret-0123456789")
    _, key = registry.create("acme")
    clock = Clock()
    auth = Authenticator(registry, admin_key=None, ttl=5, negative_ttl=10, clock=clock)
    assert [auth.lookup(b"wmk_junk") for _ in range(100)] == [None] * 100
    assert registry.lookups == 1, "a repeated unknown key costs one registry query per period"
    clock.now += 10.5
    assert auth.lookup(b"wmk_junk") is None and registry.lookups == 2
    assert auth.lookup(key.encode()) is not None, "a real key is looked up as before"

    monkeypatch.setattr(auth_module, "MAX_CACHED", 50)
    for n in range(2000):
        auth.lookup(f"wmk_junk-{n}".encode())
    assert len(auth._unknown) <= 50, "junk keys cannot grow memory without bound"
    registry.close()


def test_a_key_rotated_here_to_a_key_refused_lately_works_at_once(tmp_path: Path) -> None:
    registry = CountingRegistry(tmp_path / "tenants.db", secret="server-secret-0123456789")
    registry.create("acme")
    auth = Authenticator(registry, admin_key=None, negative_ttl=60, clock=Clock())
    chosen = "wmk_chosen-key-0123456789-abcdefghij"
    assert auth.lookup(chosen.encode()) is None
    registry.rotate_key("acme", key=chosen)
    auth.forget("acme")
    principal = auth.lookup(chosen.encode())
    assert principal is not None and principal.tenant == "acme"
    registry.close()
