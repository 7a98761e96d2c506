"""The app settings the Azure Functions host of Waymark reads, in one place.

`SETTINGS` names and documents every one; `load_azure_settings()` reads them from the environment (app
settings are environment variables in a Function app, and `local.settings.json`'s `Values` under `func start`)
into a frozen `AzureSettings`, and raises `AzureSettingsError` listing every missing or invalid one at once.

Tests keep three other places in step with `SETTINGS`: `infra/main.bicep` sets every setting whose `deployed`
is true and no other of ours (the Functions host's own settings, `FUNCTIONS_HOST_SETTINGS`, aside);
`local.settings.json.example` has every one; the documentation site's configuration reference is generated from
these descriptions (tools/docs/config_reference.py).

Connections come in two forms, as in the Functions host itself:

- **identity-based** (what main.bicep deploys): `WAYMARK_QUEUE__queueServiceUri` (+ `__credential`,
  `__clientId`), and no `WAYMARK_COSMOS_KEY`: Storage and Cosmos DB are reached with `DefaultAzureCredential`,
  i.e. the app's user-assigned managed identity named by `AZURE_CLIENT_ID`;
- **secret-based** (local development against Azurite and cosmosdb-server, or an account without Entra ID):
  `WAYMARK_QUEUE` holds a storage connection string and `WAYMARK_COSMOS_KEY` the account key.

`WAYMARK_QUEUE` is the *connection name* of the queue trigger (`connection="WAYMARK_QUEUE"`), so the host's
trigger and the app's client read the same settings. The trigger's queue name and the sweeper's schedule are
binding expressions (`%WAYMARK_QUEUE_NAME%`, `%WAYMARK_SWEEP_SCHEDULE%`), which is why those two are required.
An empty value counts as unset (local.settings.json.example lists every setting, the unused ones empty).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "FUNCTIONS_HOST_SETTINGS",
    "SETTINGS",
    "AzureSettings",
    "AzureSettingsError",
    "QueueConnection",
    "Setting",
    "load_azure_settings",
]


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    required: bool = False
    default: str | None = None  # what an unset optional setting means ("" when there is no value at all)
    secret: bool = False  # never echoed in an error
    deployed: bool = True  # set by infra/main.bicep (false: the secret-based alternatives of identity settings)


SETTINGS: tuple[Setting, ...] = (
    Setting("WAYMARK_STORE", "The event store: `cosmos` (the only store of the Azure host).", required=True),
    Setting("WAYMARK_COSMOS_ENDPOINT",
            "Endpoint of the platform's Cosmos DB account, e.g. https://waymark-cosmos.documents.azure.com:443/. "
            "The tenant registry lives there; each tenant's own endpoint is in its registry record.",
            required=True),
    Setting("WAYMARK_COSMOS_KEY",
            "Cosmos DB account key. Unset: Entra ID through DefaultAzureCredential (the app's managed identity, "
            "with the Cosmos DB Built-in Data Contributor role). Set it only for local development "
            "(cosmosdb-server accepts any key) or an account with key auth enabled.",
            secret=True, deployed=False),
    Setting("WAYMARK_COSMOS_VERIFY_TLS",
            "`true` or `false`: verify the Cosmos endpoint's TLS certificate. `false` only for a local "
            "cosmosdb-server, which serves a self-signed certificate.",
            default="true"),
    Setting("WAYMARK_TENANT_REGISTRY_DATABASE", "Cosmos database of the tenant registry.", default="waymark"),
    Setting("WAYMARK_TENANT_REGISTRY_CONTAINER",
            "Container of the tenant registry (one document per tenant, partitioned by /id).", default="tenants"),
    Setting("WAYMARK_TENANT_DATABASE_PREFIX",
            "Name of a tenant's Cosmos database when its onboarding names none: prefix + tenant id "
            "(infra/tenant.bicep uses the same default).",
            default="waymark-"),
    Setting("WAYMARK_QUEUE_NAME",
            "The command queue (3-56 lowercase letters, digits, hyphens); its poison queue is `{name}-poison`. "
            "The queue trigger binds to `%WAYMARK_QUEUE_NAME%`.",
            required=True),
    Setting("WAYMARK_QUEUE",
            "Storage connection string of the command queue (secret-based alternative to "
            "WAYMARK_QUEUE__queueServiceUri), e.g. Azurite's (`UseDevelopmentStorage=true`). Also the trigger's "
            "connection name.",
            secret=True, deployed=False),
    Setting("WAYMARK_QUEUE__queueServiceUri",
            "Identity-based: the queue service URL, https://{account}.queue.core.windows.net. "
            "Exactly one of WAYMARK_QUEUE and this is set."),
    Setting("WAYMARK_QUEUE__credential",
            "Identity-based: `managedidentity` (the Functions host's convention for the trigger)."),
    Setting("WAYMARK_QUEUE__clientId",
            "Identity-based: client id of the user-assigned identity the trigger and the app use for the queue."),
    Setting("AZURE_CLIENT_ID",
            "Client id of the app's user-assigned managed identity: DefaultAzureCredential uses it for Cosmos DB, "
            "Storage and Event Grid."),
    Setting("APPLICATIONINSIGHTS_CONNECTION_STRING",
            "Application Insights. Set: OpenTelemetry traces and logs are exported there (the Functions host "
            "reads it too). Unset: nothing is exported.",
            secret=True),
    Setting("WAYMARK_ADMIN_KEY",
            "The admin key (at least 16 characters) for the admin routes (`POST /tenants`). Deploy it from a "
            "secure parameter or a Key Vault reference.",
            required=True, secret=True),
    Setting("WAYMARK_SECRET",
            "Server secret (at least 16 characters) that tenant keys are hashed with (HMAC-SHA256). The same on "
            "every instance, and never changed: a new one invalidates every issued tenant key.",
            required=True, secret=True),
    Setting("WAYMARK_SWEEP_SCHEDULE",
            "NCRONTAB schedule (six fields, seconds first) of the outbox sweeper timer, e.g. `0 */1 * * * *`. "
            "The timer trigger binds to `%WAYMARK_SWEEP_SCHEDULE%`.",
            required=True),
    Setting("WAYMARK_OUTBOX_GRACE_SECONDS",
            "How long a commit may stay undispatched before the sweeper republishes it.", default="60"),
    Setting("WAYMARK_MAX_WAIT_SECONDS",
            "Upper bound of `Prefer: wait=N` (at most 230: the HTTP limit of a Function app).", default="30"),
    Setting("WAYMARK_LOG_LEVEL", "critical, error, warning, info or debug.", default="info"),
    Setting("WAYMARK_HOLD_SECONDS",
            "How long a command is held through an outage of its tenant's storage (re-sent with growing delays, "
            "never poisoned) before it is parked `hold-expired`.", default="86400"),
    Setting("WAYMARK_HOLD_BASE_DELAY_SECONDS",
            "The first delay of a held command; each further attempt doubles it.", default="2"),
    Setting("WAYMARK_HOLD_MAX_DELAY_SECONDS",
            "The longest delay between two attempts of a held command.", default="300"),
    Setting("WAYMARK_BREAKER_THRESHOLD",
            "Consecutive storage failures of a tenant after which its circuit breaker opens (its commands are "
            "then held without touching its storage).", default="3"),
    Setting("WAYMARK_BREAKER_COOLDOWN_SECONDS",
            "How long an open breaker waits before one command probes the storage (doubling while it stays "
            "down, up to WAYMARK_HOLD_MAX_DELAY_SECONDS).", default="5"),
    Setting("WAYMARK_TIMER_QUEUE_MAX_DELAY_SECONDS",
            "How far ahead a timer's firing goes on the command queue as a delayed message (Azure Storage's limit: 7 "
            "days, 604800). A timer due later waits in its tenant's `timers` container until the "
            "`bring_timers_forward` function moves it onto the queue. Lower it only to test that path.",
            default="604800", deployed=False),
    Setting("WAYMARK_RATE_LIMIT_PER_KEY",
            "Requests a second each key (a tenant's, or the admin key) may send to one Functions instance, "
            "sustained (bursts of twice that); past it 429 with Retry-After. 0: no limit. Per instance: a scaled-out "
            "app allows instances times this.",
            default="500", deployed=False),
    Setting("WAYMARK_RATE_LIMIT_PER_ADDRESS",
            "Failed authentications a second from one client address to one instance, sustained (bursts of 20); "
            "while spent, that address gets 429 on every route that needs a key and on the dashboard login. "
            "0: no limit.",
            default="1", deployed=False),
    Setting("WAYMARK_MAX_SUBSCRIPTIONS_PER_TENANT",
            "API subscriptions a tenant may have; one more is 409 (a definition's own are at most 10 each).",
            default="25", deployed=False),
    Setting("WAYMARK_CLIENT_ADDRESS_HOPS",
            "Proxies in front of the app that append to X-Forwarded-For: the client address is the entry this many "
            "from the right. 1: the App Service front end; 2 behind Front Door or Application Gateway as well.",
            default="1", deployed=False),
    Setting("WAYMARK_TENANT_CONCURRENCY",
            "Commands of one tenant that one Functions instance processes at once (host.json lets an instance run "
            "batchSize + newBatchThreshold = 24); a command of a tenant at its limit is re-sent with a delay (1 s, "
            "doubling each time, at most 30 s), never counted as a failed delivery. Per instance.",
            default="8", deployed=False),
    Setting("WAYMARK_DELIVERY_WAIT_SECONDS",
            "How long the queue function waits for the change-feed deliveries of its own command's commits before "
            "it returns (the outbox sweeper delivers what is left); other commands' deliveries are not waited for.",
            default="10", deployed=False),
    Setting("WAYMARK_FEED_THREADS", "Threads delivering the change feed in one instance.", default="64",
            deployed=False),
    Setting("WAYMARK_FEED_TENANT_CONCURRENCY",
            "Deliveries of one tenant in flight at once in one instance, over all its subscriptions.", default="24",
            deployed=False),
    Setting("WAYMARK_FEED_SUBSCRIPTION_CONCURRENCY",
            "Deliveries to one subscription in flight at once in one instance (one while it keeps failing).",
            default="16", deployed=False),
    Setting("WAYMARK_FEED_RESUME_AFTER_SECONDS",
            "A change-feed subscription (a webhook, the tenant's Event Grid topic) paused after repeated failures "
            "resumes by itself after this many seconds; each further pause in a row lasts twice as long.",
            default="60", deployed=False),
    Setting("WAYMARK_FEED_RESUME_MAX_SECONDS", "The longest automatic pause of a subscription.", default="3600",
            deployed=False),
    Setting("WEBSITE_HOSTNAME",
            "The app's default host name (`<app>.azurewebsites.net`), set by the platform itself: the default of "
            "WAYMARK_PUBLIC_URL.", deployed=False),
    Setting("WAYMARK_PUBLIC_URL",
            "The URL clients and subscribers reach the app at: each CloudEvent's `dataschema` is "
            "`{url}/schemas/events/{type}.json`. Default: https://{WEBSITE_HOSTNAME} (the app's own host name, which "
            "the platform sets).", deployed=False),
    Setting("WAYMARK_AUDIT_CONTENT_BYTES",
            "The largest trigger content (bytes of JSON) a TriggerIgnored or TriggerRejected event keeps whole; "
            "larger content is kept as its SHA-256 digest and size.", default="32768", deployed=False),
    Setting("WAYMARK_FEED_SUBSCRIPTIONS",
            'Static change-feed subscriptions (the seed ADR\'s "statically registered" webhooks), a JSON list of '
            '`{"name", "endpoint", "types"?, "secret"?, "mode"?, "tenants"?}`; every tenant\'s events (or the '
            "listed tenants') go to each. May hold webhook secrets: deploy it from a secure parameter or a Key Vault "
            "reference (`main.bicep` takes it as the secure parameter `feedSubscriptions`). Invalid JSON or a wrong "
            "item is a settings problem at start.",
            secret=True),
    Setting("WAYMARK_OUTBOUND_MAX_SECONDS",
            "The longest total deadline (connect, send and every read) of one `http` action or condition call; an "
            "action's `timeoutSeconds` is capped by it.",
            default="30"),
    Setting("WAYMARK_OUTBOUND_ACTION_MAX_SECONDS",
            "How long an `http` action or condition may keep retrying, from its first attempt: a retry that would "
            "start later is not made, and the instance faults. Its retries go back on the queue with a delay: none "
            "sleeps in a worker.",
            default="600"),
    Setting("WAYMARK_OUTBOUND_MAX_RESPONSE_BYTES",
            "The largest answer body an `http` action or condition reads; a larger one faults it.",
            default="262144"),
    Setting("WAYMARK_FEED_TIMEOUT_SECONDS",
            "The total deadline of one webhook request (connect, send and every read).",
            default="10"),
    Setting("WAYMARK_EXPRESSION_MAX_STEPS",
            "The most steps a CEL evaluation may take, bounded before it runs; past it the instance faults with "
            "`ExpressionBudgetExceeded` (docs: Multi-tenant safety).",
            default="20000000"),
    Setting("WAYMARK_EXPRESSION_MAX_SECONDS",
            "Seconds a CEL evaluation may take; one that ran longer faults its instance once it returns.",
            default="2"),
)

# Settings of the Functions host itself that main.bicep sets and Waymark's code does not read.
FUNCTIONS_HOST_SETTINGS: frozenset[str] = frozenset({
    "AzureWebJobsStorage",  # local: a connection string (Azurite)
    "AzureWebJobsStorage__accountName",  # deployed: identity-based host storage
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "FUNCTIONS_WORKER_RUNTIME",  # local only: a Flex Consumption app sets its runtime in functionAppConfig
})

_BY_NAME = {setting.name: setting for setting in SETTINGS}
_QUEUE_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,54}[a-z0-9]")
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
_LOG_LEVELS: tuple[LogLevel, ...] = ("critical", "error", "warning", "info", "debug")
_MAX_FUNCTION_HTTP_SECONDS = 230


class AzureSettingsError(ValueError):
    """Settings missing or invalid; `problems` has one line per setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} app setting problem(s) of the Waymark Azure host:\n{listing}")


@dataclass(frozen=True)
class QueueConnection:
    """Where the command queue is: a connection string, or a service URL reached with an identity."""

    queue_name: str
    connection_string: str | None = field(default=None, repr=False)
    service_uri: str | None = None
    client_id: str | None = None  # of the user-assigned identity, for identity-based access

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class AzureSettings:
    store: Literal["cosmos"]
    cosmos_endpoint: str
    cosmos_key: str | None = field(repr=False)  # None: DefaultAzureCredential
    cosmos_verify_tls: bool
    tenant_registry_database: str
    tenant_registry_container: str
    tenant_database_prefix: str
    queue: QueueConnection
    managed_identity_client_id: str | None
    applicationinsights_connection_string: str | None = field(repr=False)
    admin_key: str = field(repr=False)
    secret: str = field(repr=False)
    sweep_schedule: str
    outbox_grace_seconds: float
    max_wait_seconds: float
    log_level: LogLevel
    expression_max_steps: float = 20_000_000
    outbound_max_seconds: float = 30.0
    outbound_max_response_bytes: int = 262_144
    outbound_action_max_seconds: float = 600.0
    feed_timeout_seconds: float = 10.0
    expression_max_seconds: float = 2.0
    feed_subscriptions: str | None = field(default=None, repr=False)
    hold_seconds: float = 86400.0
    hold_base_delay_seconds: float = 2.0
    hold_max_delay_seconds: float = 300.0
    breaker_threshold: int = 3
    breaker_cooldown_seconds: float = 5.0
    feed_resume_after_seconds: float = 60.0
    feed_resume_max_seconds: float = 3600.0
    rate_limit_per_key: float = 500.0
    rate_limit_per_address: float = 1.0
    client_address_hops: int = 1
    tenant_concurrency: int = 8
    delivery_wait_seconds: float = 10.0
    feed_threads: int = 64
    feed_tenant_concurrency: int = 24
    feed_subscription_concurrency: int = 16
    max_subscriptions_per_tenant: int = 25
    public_url: str | None = None  # None: https://{WEBSITE_HOSTNAME}, or the local default
    audit_content_bytes: int = 32_768
    timer_queue_max_delay_seconds: float = 604800.0


def load_azure_settings(environ: Mapping[str, str] | None = None) -> AzureSettings:
    """Read every setting of `SETTINGS` from `environ` (default: `os.environ`); all problems in one error."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def raw(name: str) -> str | None:
        value = env.get(name, "").strip()
        if value:
            return value
        setting = _BY_NAME[name]
        if setting.required:
            problems.append(f"{name} is not set: {setting.description}")
            return None
        return setting.default or None

    def invalid(name: str, value: str, why: str) -> None:
        shown = "(hidden)" if _BY_NAME[name].secret else repr(value)
        problems.append(f"{name} = {shown} is invalid: {why}")

    def url(name: str) -> str | None:
        value = raw(name)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                invalid(name, value, "expected an http(s) URL")
                return None
        return value

    def number(name: str, low: float, high: float) -> float:
        value = raw(name) or _BY_NAME[name].default or "0"
        try:
            parsed = float(value)
        except ValueError:
            parsed = float("nan")
        if not low <= parsed <= high:  # also false for NaN
            invalid(name, value, f"expected a number from {low:g} to {high:g}")
            return float(_BY_NAME[name].default or 0)
        return parsed

    def long_secret(name: str) -> str:
        value = raw(name) or ""
        if value and len(value) < 16:
            invalid(name, value, "must be at least 16 characters")
        return value

    store = raw("WAYMARK_STORE")
    if store is not None and store != "cosmos":
        invalid("WAYMARK_STORE", store, "the Azure host supports only `cosmos`")

    cosmos_endpoint = url("WAYMARK_COSMOS_ENDPOINT") or ""
    verify = (raw("WAYMARK_COSMOS_VERIFY_TLS") or "true").lower()
    if verify not in ("true", "false"):
        invalid("WAYMARK_COSMOS_VERIFY_TLS", verify, "expected `true` or `false`")

    queue_name = raw("WAYMARK_QUEUE_NAME") or ""
    if queue_name and not _QUEUE_NAME.fullmatch(queue_name):
        invalid("WAYMARK_QUEUE_NAME", queue_name,
                "3 to 56 lowercase letters, digits or single hyphens, starting and ending with a letter or digit")
    connection_string = raw("WAYMARK_QUEUE")
    service_uri = url("WAYMARK_QUEUE__queueServiceUri")
    queue_credential = raw("WAYMARK_QUEUE__credential")
    if connection_string is None and not env.get("WAYMARK_QUEUE__queueServiceUri", "").strip():
        problems.append("the command queue has no connection: set WAYMARK_QUEUE__queueServiceUri (identity-based) "
                        "or WAYMARK_QUEUE (a storage connection string)")
    if connection_string is not None and service_uri is not None:
        problems.append("WAYMARK_QUEUE and WAYMARK_QUEUE__queueServiceUri are both set: set one")
    if connection_string is not None and "=" not in connection_string:
        invalid("WAYMARK_QUEUE", connection_string, "expected a storage connection string (Key=Value;...)")
    if queue_credential is not None and queue_credential.lower() != "managedidentity":
        invalid("WAYMARK_QUEUE__credential", queue_credential, "the only value is `managedidentity`")

    given_level = (raw("WAYMARK_LOG_LEVEL") or "info").lower()
    log_level: LogLevel = "info"
    for level in _LOG_LEVELS:
        if level == given_level:
            log_level = level
    if given_level not in _LOG_LEVELS:
        invalid("WAYMARK_LOG_LEVEL", given_level, f"expected one of {', '.join(_LOG_LEVELS)}")

    schedule = raw("WAYMARK_SWEEP_SCHEDULE") or ""
    if schedule and len(schedule.split()) != 6:
        invalid("WAYMARK_SWEEP_SCHEDULE", schedule, "an NCRONTAB expression has six fields: second minute hour "
                                                    "day month day-of-week")

    feed_subscriptions = raw("WAYMARK_FEED_SUBSCRIPTIONS")
    if feed_subscriptions is not None:
        from engine.feed.sources import parse_static_subscriptions
        from engine.feed.subscriptions import InvalidSubscription

        try:
            parse_static_subscriptions(feed_subscriptions)
        except (InvalidSubscription, ValueError) as e:  # ValueError: not JSON
            problems.append(f"WAYMARK_FEED_SUBSCRIPTIONS is invalid: {e}")

    host_name = (env.get("WEBSITE_HOSTNAME") or "").strip()
    public_url = url("WAYMARK_PUBLIC_URL") or (f"https://{host_name}" if host_name else None)

    settings = AzureSettings(
        store="cosmos",
        cosmos_endpoint=cosmos_endpoint,
        cosmos_key=raw("WAYMARK_COSMOS_KEY"),
        cosmos_verify_tls=verify != "false",
        tenant_registry_database=raw("WAYMARK_TENANT_REGISTRY_DATABASE") or "waymark",
        tenant_registry_container=raw("WAYMARK_TENANT_REGISTRY_CONTAINER") or "tenants",
        tenant_database_prefix=raw("WAYMARK_TENANT_DATABASE_PREFIX") or "",
        queue=QueueConnection(
            queue_name=queue_name,
            connection_string=connection_string,
            service_uri=None if connection_string is not None else service_uri,
            client_id=raw("WAYMARK_QUEUE__clientId"),
        ),
        managed_identity_client_id=raw("AZURE_CLIENT_ID"),
        applicationinsights_connection_string=raw("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        admin_key=long_secret("WAYMARK_ADMIN_KEY"),
        secret=long_secret("WAYMARK_SECRET"),
        sweep_schedule=schedule,
        outbox_grace_seconds=number("WAYMARK_OUTBOX_GRACE_SECONDS", 0, 7 * 24 * 3600),
        max_wait_seconds=number("WAYMARK_MAX_WAIT_SECONDS", 0, _MAX_FUNCTION_HTTP_SECONDS),
        log_level=log_level,
        feed_subscriptions=feed_subscriptions,
        hold_seconds=number("WAYMARK_HOLD_SECONDS", 0, 7 * 24 * 3600),
        hold_base_delay_seconds=number("WAYMARK_HOLD_BASE_DELAY_SECONDS", 0, 3600),
        hold_max_delay_seconds=number("WAYMARK_HOLD_MAX_DELAY_SECONDS", 0, 7 * 24 * 3600),
        breaker_threshold=int(number("WAYMARK_BREAKER_THRESHOLD", 1, 1000)),
        breaker_cooldown_seconds=number("WAYMARK_BREAKER_COOLDOWN_SECONDS", 0, 3600),
        feed_resume_after_seconds=number("WAYMARK_FEED_RESUME_AFTER_SECONDS", 0, 7 * 24 * 3600),
        feed_resume_max_seconds=number("WAYMARK_FEED_RESUME_MAX_SECONDS", 0, 7 * 24 * 3600),
        rate_limit_per_key=number("WAYMARK_RATE_LIMIT_PER_KEY", 0, 1_000_000),
        rate_limit_per_address=number("WAYMARK_RATE_LIMIT_PER_ADDRESS", 0, 1_000_000),
        client_address_hops=int(number("WAYMARK_CLIENT_ADDRESS_HOPS", 0, 10)),
        tenant_concurrency=int(number("WAYMARK_TENANT_CONCURRENCY", 1, 1000)),
        delivery_wait_seconds=number("WAYMARK_DELIVERY_WAIT_SECONDS", 0, 600),
        feed_threads=int(number("WAYMARK_FEED_THREADS", 1, 1024)),
        feed_tenant_concurrency=int(number("WAYMARK_FEED_TENANT_CONCURRENCY", 1, 1024)),
        feed_subscription_concurrency=int(number("WAYMARK_FEED_SUBSCRIPTION_CONCURRENCY", 1, 1024)),
        max_subscriptions_per_tenant=int(number("WAYMARK_MAX_SUBSCRIPTIONS_PER_TENANT", 1, 10_000)),
        public_url=public_url,
        audit_content_bytes=int(number("WAYMARK_AUDIT_CONTENT_BYTES", 0, 1_048_576)),
        timer_queue_max_delay_seconds=number("WAYMARK_TIMER_QUEUE_MAX_DELAY_SECONDS", 1, 7 * 24 * 3600),
        outbound_max_seconds=number("WAYMARK_OUTBOUND_MAX_SECONDS", 0.1, 300),
        outbound_max_response_bytes=int(number("WAYMARK_OUTBOUND_MAX_RESPONSE_BYTES", 1024, 1 << 30)),
        outbound_action_max_seconds=number("WAYMARK_OUTBOUND_ACTION_MAX_SECONDS", 1, 7 * 24 * 3600),
        feed_timeout_seconds=number("WAYMARK_FEED_TIMEOUT_SECONDS", 0.1, 300),
        expression_max_steps=number("WAYMARK_EXPRESSION_MAX_STEPS", 1_000, 1e12),
        expression_max_seconds=number("WAYMARK_EXPRESSION_MAX_SECONDS", 0.001, 600),
    )
    if problems:
        raise AzureSettingsError(problems)
    return settings

