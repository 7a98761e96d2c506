"""Who is calling: `Authorization: Bearer <key>`, checked before any route runs.

What a route needs is decided per route (engine/api/access.py), from the route the request is routed to, never
from a prefix of the raw path. Rules, in this order:

1. PUBLIC and SESSION routes (liveness, the API's description, the dashboard with its own sign-in) need no key;
2. no key, or a key that is neither the admin key nor a tenant's key → 401 with `WWW-Authenticate: Bearer`;
3. an ADMIN route (onboarding, readiness, anything without a `{tenant}`) is for the admin key only → 403 for a
   tenant key;
4. a tenant key on another tenant's path → 403, whether or not that tenant exists (a key never learns which
   other tenants there are);
5. the admin key on the path of a tenant that does not exist → 404.

A path no route matches runs nothing (404); under `/tenants` it is still checked as a tenant path first.

Checked keys are cached in-process for a few seconds (`auth_cache_seconds`), so accepting a command costs no
registry lookup; keys the registry did not know are refused without asking it again for `auth_negative_cache_seconds`.
Both caches are bounded (MAX_CACHED entries).

Rate limits (engine/api/ratelimit.py): every request of an authenticated key takes a token from its key's bucket;
a failed authentication takes one from its client address's bucket, and while that is empty the address's requests
get 429 before any registry lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.api.access import Access, access_of, routed
from engine.api.problems import ApiProblem, problem_for
from engine.api.ratelimit import RateLimits
from engine.tenants import TenantRegistry

__all__ = ["AuthMiddleware", "Authenticator", "Principal", "principal_of"]

MAX_CACHED = 10_000
_CHALLENGE = 'Bearer realm="waymark"'


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str | None  # None: the admin

    @property
    def admin(self) -> bool:
        return self.tenant is None

    def __str__(self) -> str:
        return "admin" if self.tenant is None else f"tenant {self.tenant!r}"


ADMIN = Principal(None)


class Authenticator:
    """Keys to principals, with two in-process caches: keys found (`ttl` seconds) and keys the registry did not know
    (`negative_ttl` seconds, so a client repeating a wrong or rotated key costs one registry query per period, not
    one per request — on Cosmos a cross-partition query). Both hold at most MAX_CACHED entries."""

    def __init__(self, tenants: TenantRegistry, *, admin_key: str | None, ttl: float = 5.0,
                 negative_ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.tenants = tenants
        self._admin = admin_key.encode() if admin_key else None
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._keys: dict[bytes, tuple[Principal, float]] = {}
        self._tenants: dict[str, float] = {}
        self._unknown: OrderedDict[bytes, float] = OrderedDict()  # digest → until when it is refused
        self._lock = threading.Lock()

    def cached(self, key: bytes) -> Principal | None:
        """The principal of a key if it is known without I/O (the admin key, or a key checked lately)."""
        if self._admin is not None and hmac.compare_digest(key, self._admin):
            return ADMIN
        entry = self._keys.get(_digest(key))
        if entry is not None and entry[1] > self.clock():
            return entry[0]
        return None

    def lookup(self, key: bytes) -> Principal | None:
        """Ask the registry (blocking), unless the key was refused lately. None for an unknown key."""
        found = self.cached(key)
        if found is not None:
            return found
        digest = _digest(key)
        if self._refused_lately(digest):
            return None
        record = self.tenants.authenticate(key.decode("latin-1"))
        if record is None:
            self._refuse(digest)
            return None
        principal = Principal(record.id)
        if self.ttl > 0:
            if len(self._keys) >= MAX_CACHED:
                self._keys.clear()
            self._keys[digest] = (principal, self.clock() + self.ttl)
            self._tenants[record.id] = self.clock() + self.ttl
        return principal

    def _refused_lately(self, digest: bytes) -> bool:
        with self._lock:
            until = self._unknown.get(digest)
            if until is None:
                return False
            if until > self.clock():
                return True
            del self._unknown[digest]
            return False

    def _refuse(self, digest: bytes) -> None:
        if self.negative_ttl <= 0:
            return
        with self._lock:
            self._unknown.pop(digest, None)
            self._unknown[digest] = self.clock() + self.negative_ttl
            while len(self._unknown) > MAX_CACHED:
                self._unknown.popitem(last=False)  # the oldest: every entry has the same lifetime

    def tenant_known(self, tenant: str) -> bool:
        expires = self._tenants.get(tenant)
        return expires is not None and expires > self.clock()

    def check_tenant(self, tenant: str) -> None:
        """Raise TenantNotFound unless the tenant exists (blocking on a cache miss)."""
        if self.tenant_known(tenant):
            return
        self.tenants.get(tenant)
        if self.ttl > 0:
            if len(self._tenants) >= MAX_CACHED:
                self._tenants.clear()
            self._tenants[tenant] = self.clock() + self.ttl

    def forget(self, tenant: str) -> None:
        """Drop what is cached about a tenant (after its key was rotated here), and the keys refused lately (the
        new key may be one of them, when it was given rather than generated)."""
        self._tenants.pop(tenant, None)
        for digest, (principal, _) in list(self._keys.items()):
            if principal.tenant == tenant:
                self._keys.pop(digest, None)
        with self._lock:
            self._unknown.clear()


def _digest(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=20).digest()


def bearer_key(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.strip().partition(b" ")
            key = key.strip()
            if scheme.lower() == b"bearer" and key:
                return key
            return None
    return None


def principal_of(scope: Scope) -> Principal:
    principal = scope.get("state", {}).get("principal")
    assert isinstance(principal, Principal), "AuthMiddleware sets the principal of every route that needs a key"
    return principal


class AuthMiddleware:
    """`routes`: the app's routes (the router's own list, so routes added later are covered too)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, routes: Iterable[BaseRoute],
                 limits: RateLimits | None = None) -> None:
        self.app = app
        self.authenticator = authenticator
        self.routes = routes
        self.limits = limits or RateLimits.off()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access, tenant = self._access(scope)
        if access is Access.PUBLIC or access is Access.SESSION:
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._authorise(scope, access, tenant)
        except Exception as error:
            await problem_for(error, scope.get("path"))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _access(self, scope: Scope) -> tuple[Access, str]:
        """What the request's route needs, and the tenant it names ("" for none)."""
        route, params = routed(self.routes, scope)
        if route is not None:
            return access_of(route), str(params.get("tenant", ""))
        path = get_route_path(scope)
        if path == "/tenants" or path.startswith("/tenants/"):
            segments = path.split("/")
            tenant = segments[2] if len(segments) > 2 else ""
            return (Access.TENANT if tenant else Access.ADMIN), tenant
        return Access.PUBLIC, ""  # no route: the router answers 404 and runs nothing

    async def _authorise(self, scope: Scope, access: Access, tenant: str) -> Principal:
        principal = await self._principal(scope)
        self.limits.check_key(principal.tenant or "admin")
        auth = self.authenticator
        if access is Access.ADMIN:
            if not principal.admin:
                raise ApiProblem(403, "Forbidden", "Only the admin key may call this route.", slug="forbidden")
        elif principal.admin:
            if not auth.tenant_known(tenant):
                await run_in_threadpool(auth.check_tenant, tenant)  # TenantNotFound: 404
        elif principal.tenant != tenant:
            raise ApiProblem(403, "Forbidden", f"This key may not access tenant {tenant!r}.", slug="forbidden")
        return principal

    async def _principal(self, scope: Scope) -> Principal:
        """Who the key is, or 401; an address that failed too often lately gets 429 before its key is looked up."""
        key = bearer_key(scope)
        auth = self.authenticator
        principal = auth.cached(key) if key is not None else None
        if principal is not None:
            return principal
        address = self.limits.address(scope)
        self.limits.check_address(address)
        if key is None:
            self.limits.failed(address)
            raise ApiProblem(401, "Unauthorized", "This route needs an `Authorization: Bearer <key>` header.",
                             slug="unauthorized", headers={"WWW-Authenticate": _CHALLENGE})
        principal = await run_in_threadpool(auth.lookup, key)
        if principal is None:
            self.limits.failed(address)
            raise ApiProblem(401, "Unauthorized", "The key given is not a valid key.", slug="unauthorized",
                             headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'})
        return principal
