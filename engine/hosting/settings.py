"""Configuration of a Waymark server, from `WAYMARK_*` environment variables (and `waymark serve` flags).

Every setting is documented by its `description`, from which the documentation site's configuration reference is
generated (tools/docs/config_reference.py; a test checks each has one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
StoreKind = Literal["sqlite", "cosmos"]
Synchronous = Literal["full", "normal"]  # engine.drivers.sqlite.Synchronous


class Settings(BaseSettings):
    # validate_by_name: `Settings(cosmos_verify=False)` works although that field reads two environment variables.
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", validate_default=True,
                                      validate_by_name=True, validate_by_alias=True)

    data_dir: Path = Field(
        default=Path(".waymark"), description="Where the SQLite files, the secret and the admin key live.")
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8080, ge=0, le=65535,
                      description="TCP port to listen on (0: any free port, printed at start).")
    admin_key: str | None = Field(
        default=None, repr=False, min_length=16,
        description="The admin key. When unset, one is generated on first start and kept in {data_dir}/admin-key "
                    "(mode 0600).")
    demo_key: str | None = Field(
        default=None, repr=False, min_length=16,
        description="The key of the `demo` tenant created on first start (random, and shown once, if unset). Set on "
                    "a later start, the demo tenant's key is made this one.")
    secret: str | None = Field(
        default=None, repr=False, min_length=16,
        description="Server secret tenant keys are hashed with (HMAC-SHA256). When unset, one is generated once "
                    "into {data_dir}/secret (mode 0600). Set it before the first start or never: under another secret, "
                    "the tenant keys issued so far stop matching.")
    root_path: str = Field(
        default="", pattern=r"^(/[^/?#]+)*$", max_length=200,
        description="Path prefix a reverse proxy serves the API under, which it strips before passing requests on "
                    "(uvicorn's `--root-path`, e.g. `/api`): redirects and links carry it. Auth is decided per route "
                    "either way.")
    max_body_bytes: int = Field(
        default=262_144, ge=1024, description="Largest request body accepted; a larger one gets 413.")
    sqlite_synchronous: Synchronous = Field(
        default="full",
        description="How every SQLite file (the tenants' stores, the command queue, the tenant registry, the "
                    "subscriptions) is synced. `full`: each commit is on the disk before it returns, so an "
                    "acknowledged command (202, 201, 200) survives an OS crash or a power cut. `normal` is faster "
                    "and loses nothing when the process crashes, but a power cut or OS crash may lose the last "
                    "commits of each file, and the files independently: a command answered 202 may vanish, or "
                    "leave the queue while the commit it made is lost.")
    workers: int = Field(
        default=2, ge=0, le=64,
        description="Queue worker threads in the serve process (0: accept only; `waymark worker` processes).")
    tenant_workers: int | None = Field(
        default=None, ge=1,
        description="Workers one tenant's commands may occupy at once (default: half the workers, at least one); a "
                    "command of a tenant at its limit is sent back to the queue with a delay (1 s, doubling each "
                    "time, at most 30 s).")
    visibility_timeout: float = Field(
        default=30.0, gt=0,
        description="Seconds a received command stays hidden from other workers before it is handed out again.")
    max_dequeue_count: int = Field(
        default=5, ge=1, description="Deliveries of a command before it goes to the poison queue.")
    load_samples: bool = Field(
        default=True, description="On first start, create the `demo` tenant and load samples/*.json into it.")
    hold_seconds: float = Field(
        default=86400.0, ge=0,
        description="How long a command is held through an outage of its tenant's storage (put back with growing "
                    "delays, never poisoned) before it is parked `hold-expired`.")
    hold_base_delay: float = Field(default=2.0, ge=0, description="The first delay of a held command (doubled on "
                                                                   "each attempt).")
    hold_max_delay: float = Field(default=300.0, ge=0, description="The longest delay between two attempts of a held "
                                                                   "command.")
    breaker_threshold: int = Field(
        default=3, ge=1, description="Consecutive storage failures of a tenant after which its circuit breaker opens.")
    breaker_cooldown: float = Field(
        default=5.0, ge=0, description="Seconds an open circuit breaker waits before one command probes the storage "
                                       "again (doubling while it stays down, up to `hold_max_delay`).")
    max_wait_seconds: float = Field(default=30.0, ge=0, le=30, description="Upper bound of `Prefer: wait=N`.")
    auth_cache_seconds: float = Field(
        default=5.0, ge=0,
        description="How long a checked key is trusted without asking the registry again (a rotated key may go on "
                    "working this long in another process).")
    auth_negative_cache_seconds: float = Field(
        default=10.0, ge=0,
        description="How long a key the registry did not know is refused without asking it again (at most 10,000 "
                    "such keys are remembered, the oldest forgotten first).")
    rate_limit_per_key: float = Field(
        default=500.0, ge=0,
        description="Requests a second each key (a tenant's, or the admin key) may send to one server process, "
                    "sustained; past it `429` with `Retry-After`. 0: no limit.")
    rate_limit_burst_per_key: float = Field(
        default=1000.0, ge=1, description="Requests a key may send at once above its sustained rate.")
    rate_limit_per_address: float = Field(
        default=1.0, ge=0,
        description="Failed authentications (API requests without a valid key, failed dashboard logins) a second "
                    "from one client address, sustained; while spent, the address gets `429` on every route that "
                    "needs a key and on the login. 0: no limit.")
    rate_limit_burst_per_address: float = Field(
        default=20.0, ge=1, description="Failed authentications a client address may make at once.")
    client_address_hops: int = Field(
        default=0, ge=0, le=10,
        description="Trusted proxies in front of the server that append to `X-Forwarded-For`: the client address "
                    "(of the per-address limit) is the entry this many from the right. 0: the connecting address.")
    shutdown_timeout: float = Field(
        default=5.0, gt=0,
        description="Seconds in-flight requests (a `Prefer: wait` among them) may take to finish on shutdown.")
    expression_max_steps: int = Field(
        default=20_000_000, ge=1_000,
        description="The most steps (about one element copied each) a CEL evaluation may take, bounded before it "
                    "runs; past it the instance faults with `ExpressionBudgetExceeded`.")
    expression_max_seconds: float = Field(
        default=2.0, gt=0,
        description="Seconds a CEL evaluation may take; one that ran longer faults its instance once it returns.")
    log_level: LogLevel = Field(default="warning", description="Log level of uvicorn and the engine (to stderr).")
    access_log: bool = Field(default=False, description="Log every request (uvicorn's access log).")
    feed_origin: str = Field(
        default="waymark",
        description="What the webhook handshake announces as `WebHook-Request-Origin` (and the CloudEvents origin).")
    allow_private_destinations: bool = Field(
        default=True,
        description="Let outbound calls (webhooks, `http` actions and conditions) reach loopback, private and "
                    "link-local addresses. On by default here (local mode: local services are called), and said so "
                    "at start-up; the Azure host always refuses them.")
    outbound_max_seconds: float = Field(
        default=30.0, gt=0, le=300,
        description="The longest total deadline (connect, send and every read) of one `http` action or condition "
                    "call: an action's `timeoutSeconds` is capped by it.")
    outbound_action_max_seconds: float = Field(
        default=600.0, gt=0,
        description="How long an `http` action or condition may keep retrying, from its first attempt: a retry that "
                    "would start later is not made, and the instance faults. Its retries go back on the queue with a "
                    "delay: none sleeps in a worker.")
    outbound_max_response_bytes: int = Field(
        default=262_144, ge=1024,
        description="The largest answer body an `http` action or condition reads; a larger one faults it.")
    feed_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="The total deadline of one webhook request (connect, send and every read).")
    feed_subscriptions: str | None = Field(
        default=None,
        description='Static subscriptions, as JSON: `[{"name": "audit", "endpoint": "https://…", "types": [...], '
                    '"secret": "…", "mode": "structured", "tenants": ["acme"]}]`.')
    feed_grace_seconds: float = Field(
        default=30.0, ge=0, description="Age after which the sweeper republishes a commit still undispatched.")
    feed_sweep_seconds: float = Field(default=10.0, gt=0, description="How often the outbox sweeper runs.")
    max_subscriptions_per_tenant: int = Field(
        default=25, ge=1, le=10_000,
        description="API subscriptions (`PUT /tenants/{t}/subscriptions/{name}`) a tenant may have; one more is "
                    "`409`. A definition's own `eventSubscriptions` are at most 10 per definition.")
    feed_pause_after: int = Field(
        default=5, ge=1, description="Consecutive failed deliveries after which a subscription is paused.")
    feed_threads: int = Field(
        default=64, ge=1, le=1024, description="Threads delivering the change feed (webhooks, Event Grid).")
    feed_tenant_concurrency: int = Field(
        default=24, ge=1, description="Deliveries of one tenant in flight at once, over all its subscriptions.")
    feed_subscription_concurrency: int = Field(
        default=16, ge=1, description="Deliveries to one subscription in flight at once (one while it keeps "
                                      "failing).")
    feed_resume_after: float = Field(
        default=60.0, ge=0,
        description="A subscription paused by failures resumes by itself after this many seconds (each further "
                    "pause in a row twice as long).")
    feed_resume_max: float = Field(default=3600.0, ge=0, description="The longest automatic pause of a subscription.")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$", max_length=2000,
        description="The URL clients and subscribers reach this server at (e.g. `https://waymark.example.org`): "
                    "each CloudEvent's `dataschema` is `{public_url}/schemas/events/{type}.json`. Default: "
                    "`http://{host}:{port}`.")
    audit_content_bytes: int = Field(
        default=32_768, ge=0, le=1_048_576,
        description="The largest trigger content (bytes of JSON) a TriggerIgnored or TriggerRejected event keeps "
                    "whole; larger content is kept as its SHA-256 digest and size.")
    store: StoreKind = Field(
        default="sqlite",
        description="Where a tenant's events and definitions live when its configuration names no store: `sqlite` "
                    "(a file per tenant under the data directory) or `cosmos` (a database per tenant in the account "
                    "at `cosmos_endpoint`, created on onboarding). The tenant registry and the command queue stay "
                    "in the data directory either way.")
    cosmos_endpoint: str | None = Field(
        default=None,
        description="The Cosmos DB account endpoint (`https://…:443/`) of `store: cosmos` and of tenants whose "
                    "configuration names none. Required with `store: cosmos`.")
    cosmos_key: str | None = Field(
        default=None, repr=False,
        description="The account key of the Cosmos endpoints this host reaches with key auth. When unset, Cosmos is "
                    "reached with `DefaultAzureCredential` (the tenants' auth is `identity`).")
    cosmos_verify: bool = Field(
        default=True, validation_alias=AliasChoices("WAYMARK_COSMOS_VERIFY", "WAYMARK_COSMOS_VERIFY_TLS"),
        description="Verify the Cosmos endpoint's TLS certificate (also read from WAYMARK_COSMOS_VERIFY_TLS, the "
                    "Azure host's name). `false` only for a local cosmosdb-server (self-signed certificate): the serve "
                    "then says so once, instead of urllib3's warning on every request.")
    tenant_database_prefix: str = Field(
        default="waymark-", max_length=64,
        description="A Cosmos tenant's database is `{prefix}{tenant}` unless its configuration names one.")

    @property
    def schema_base(self) -> str:
        """Where this server's published schemas are: `public_url`, or the address it listens on."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @model_validator(mode="after")
    def _cosmos_needs_an_endpoint(self) -> Self:
        if self.store == "cosmos" and not self.cosmos_endpoint:
            raise ValueError("store `cosmos` needs a Cosmos endpoint (WAYMARK_COSMOS_ENDPOINT, --cosmos-endpoint)")
        return self
