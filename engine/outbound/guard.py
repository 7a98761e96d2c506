"""Which destinations an outbound call may reach: the one guard of webhooks, `http` actions and `http` conditions.

Unless private destinations are allowed (`waymark serve`'s local mode), a host must resolve only to public
addresses. Refused, on every address a host resolves to (not just the first):

- IPv4: loopback (127/8), private (RFC 1918), link-local (169.254/16, the cloud metadata endpoint
  169.254.169.254 among them), shared/CGNAT (100.64/10), unspecified (0/8), multicast, and every other range
  that is not globally routable (documentation, benchmarking, reserved, broadcast);
- IPv6: loopback, unspecified, unique-local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10),
  multicast, and the forms that carry an IPv4 address another way, whatever that address: NAT64 (64:ff9b::/96,
  64:ff9b:1::/48), 6to4 (2002::/16), Teredo (2001::/32), IPv4-compatible (::/96, e.g. ::7f00:1) and
  IPv4-translated (::ffff:0:0:0/96, e.g. ::ffff:0:7f00:1). An IPv4-mapped address (::ffff:a.b.c.d) is judged
  as the IPv4 address it maps.

The check is made when connecting (engine/outbound/client.py), on the very addresses the socket connects to, so
DNS rebinding between a check and a connection gets nowhere. A refusal never tells which address a name resolved
to: that would let a tenant read the internal DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from engine.domain import WaymarkError

__all__ = ["DestinationPolicy", "DestinationRefused", "Resolver", "refusal"]

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_CARRIES_IPV4 = tuple(ipaddress.ip_network(net) for net in (
    "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32", "::/96", "::ffff:0:0:0/96"))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
NOT_PUBLIC = ("it is not a public address (loopback, private, link-local, shared, multicast, reserved and "
              "IPv4-in-IPv6 destinations are not allowed)")


class DestinationRefused(WaymarkError):
    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"destination {endpoint!r} is refused: {reason}")


def refusal(address: _Address) -> str | None:
    """Why `address` may not be called (a short class: "loopback", "link-local" …), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal(address.ipv4_mapped)
        if address in _SITE_LOCAL:
            return "site-local"
        if address.is_loopback or address.is_unspecified:  # ::1 and :: lie inside ::/96: name them first
            return "loopback" if address.is_loopback else "unspecified"
        if any(address in network for network in _CARRIES_IPV4):
            return "an IPv4 address carried in IPv6"
    checks = (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("shared (CGNAT)", address in _CGNAT), ("private", address.is_private))
    for name, hit in checks:
        if hit:
            return name
    return None if address.is_global else "reserved"


class DestinationPolicy:
    """Which hosts outbound calls may reach. Every address a host resolves to must be allowed, not just one."""

    def __init__(self, *, allow_private: bool = False, resolve: Resolver = socket.getaddrinfo) -> None:
        self.allow_private = allow_private
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`, all checked; raises DestinationRefused."""
        host = host.strip("[]")
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise DestinationRefused(host, "the host cannot be resolved") from e
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise DestinationRefused(host, "the host cannot be resolved")
        if not self.allow_private and any(refusal(ipaddress.ip_address(a)) for a in addresses):
            raise DestinationRefused(host, NOT_PUBLIC)
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
            raise DestinationRefused(endpoint, "credentials in the URL are not allowed")
        try:
            self.addresses(url.host, url.port or (443 if url.scheme == "https" else 80))
        except DestinationRefused as e:
            raise DestinationRefused(endpoint, e.reason) from None
