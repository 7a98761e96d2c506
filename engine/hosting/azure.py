"""The Azure composition root: what `function_app.py` runs, built once per process from the app settings.

`AzureHost` holds the process's long-lived clients and services, all built from one `AzureSettings`:

- one `CosmosClient` of the platform account (key, or `DefaultAzureCredential` with the app's user-assigned
  identity), shared by the tenant registry and by every tenant whose data is in that account;
- the tenant registry (`CosmosTenantRegistry`, the platform database and container) and the tenant-routed event and
  definition stores (each tenant in its own database, named by its registry record);
- the command queue (`AzureStorageCommandQueue`: a connection string, or the queue service URL and the identity);
- the `Engine` (the same `CommandProcessor` as `waymark serve`'s workers), with `http` actions on httpx;
- the change feed: subscriptions in the tenant's `subscriptions` container (`CosmosSubscriptionStore`), webhooks
  refused to private and loopback addresses, and the tenant's Event Grid topic from its configuration;
- the FastAPI app (`create_app`, with the feed routes).

What the three functions call:

- HTTP: `LazyAzureHost.asgi` — an ASGI app that builds the host on the first request and hands every request to
  its FastAPI app;
- queue: `AzureHost.process(body, …)` → `process_message`: decode, `CommandProcessor.handle`, and **raise** when
  the engine fails (the store unreachable…) so the Functions host does not complete the message: it comes back
  after the visibility timeout and, after `maxDequeueCount` deliveries, goes to `{queue}-poison`. A command that
  can never succeed (malformed, or creating an instance that exists) is logged and completed, as the local worker
  does. At most `WAYMARK_TENANT_CONCURRENCY` commands of one tenant are processed at once in the process: one of a
  tenant at its limit is re-sent with a short delay (engine/service/fairness.py) and the original completed. Then
  the invocation waits (at most `WAYMARK_DELIVERY_WAIT_SECONDS`) for the deliveries of *its own* commits, not for
  those of other invocations or tenants: the host may freeze the process between invocations, and the outbox
  sweeper delivers whatever is left;
- timer: `AzureHost.sweep()` — repairs the Cosmos instance index and republishes undispatched commits.

Nothing connects at import: `LazyAzureHost` builds the host on first use, so `function_app.py` imports (and the
Functions host indexes its functions) with no settings at all, and the first invocation fails with the
`AzureSettingsError` listing every missing or invalid setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from engine.domain import ActionRetries, ExpressionBudget, InstanceAlreadyExists, Services, StoreUnavailable
from engine.drivers.cosmos import cosmos_client
from engine.feed import ChangeFeed, EventGridPublisher, SweepReport, WebhookPublisher, parse_static_subscriptions
from engine.feed.pausing import ResumePolicy
from engine.feed.subscriptions_cosmos import CosmosSubscriptionStore, SubscriptionsLocation
from engine.hosting.azure_settings import AzureSettings, load_azure_settings
from engine.hosting.observability import command_span, configure_host_logging, configure_tracing, log_context
from engine.hosting.settings import Settings
from engine.queues.azure import AzureStorageCommandQueue, decode_body
from engine.schemas import DEFAULT_SCHEMA_BASE
from engine.service.commands import MalformedCommand, from_message
from engine.service.engine import Engine
from engine.service.failures import CommandFailures
from engine.service.fairness import TenantGate, deferred_body, tenant_of
from engine.service.holding import CircuitBreakers, HoldPolicy
from engine.service.processor import CommandProcessor
from engine.service.results import Result
from engine.service.retrying import RetryLater
from engine.service.timers import TimerScheduler
from engine.stores.routing import (
    TenantRoutedDefinitionStore,
    TenantRoutedEventStore,
    TenantRoutedParkedStore,
    TenantStoreRouter,
)
from engine.stores.timers_cosmos import CosmosTimerIndex, TimersLocation
from engine.tenants import DEFINITION_SECRETS, sealer_of
from engine.tenants.cosmos import CosmosTenantRegistry

__all__ = ["MAX_DEQUEUE_COUNT", "SWEEP_WAIT_SECONDS", "TIMERS_SCHEDULE", "AzureHost", "LazyAzureHost",
           "SweepOutcome", "UndecodableMessage", "process_message"]

log = logging.getLogger("waymark.azure")

MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount (a test keeps the two equal)
SWEEP_WAIT_SECONDS = 50.0  # how long the timer waits for what it republished (the timer fires every minute)
TIMERS_SCHEDULE = "0 */10 * * * *"  # bring_timers_forward: timers due within 7 days go on the queue ten minutes early
ORIGIN = "waymark"


class UndecodableMessage(ValueError):
    """A queue message that is not a JSON object: retried like an engine failure, so that it ends in the poison
    queue, where it can be seen (the local queue adapter poisons such a message at once)."""


# ---------------------------------------------------------------------------------------------- the queue function

def _trigger_id(body: Mapping[str, Any]) -> Any:
    trigger = body.get("trigger")
    return trigger.get("id") if isinstance(trigger, Mapping) else body.get("triggerId")


def process_message(processor: CommandProcessor, body: bytes | str | Mapping[str, Any], *,
                    message_id: str | None = None, dequeue_count: int | None = None,
                    max_dequeue_count: int = MAX_DEQUEUE_COUNT,
                    failures: CommandFailures | None = None) -> list[Result]:
    """Process one command message as the queue function does: its results, or [] for a command completed without
    effect (held, parked). Raises when the message must stay on the queue (the host delivers it again)."""
    parsed = dict(body) if isinstance(body, Mapping) else decode_body(body)
    known = parsed or {}
    fields = {"function": "process_command", "messageId": message_id, "dequeueCount": dequeue_count,
              "tenant": known.get("tenant"), "instanceId": known.get("instanceId"), "triggerId": _trigger_id(known)}
    with log_context(**fields), command_span("waymark.command", kind=known.get("kind"), tenant=fields["tenant"],
                                             instance_id=fields["instanceId"], trigger_id=fields["triggerId"],
                                             message_id=message_id, dequeue_count=dequeue_count) as span:
        if parsed is not None and failures is not None and failures.held_by_breaker(parsed, message_id=message_id):
            span.set_attribute("waymark.outcome", "held")
            return []
        try:
            if parsed is None:
                raise UndecodableMessage("the message is not a JSON object (nor base64 of one)")
            results = processor.handle(from_message(parsed))
        except Exception as e:
            taken = _taken_care_of(parsed, e, failures, dequeue_count, message_id)
            if taken is not None:
                span.set_attribute("waymark.outcome", taken)
                return []
            last = dequeue_count is not None and dequeue_count >= max_dequeue_count
            then = ("this was the last delivery: the host moves it to the poison queue" if last
                    else "it is delivered again after its visibility timeout")
            log.error("processing failed, the message stays on the queue (%s): %s: %s", then, type(e).__name__, e,
                      exc_info=not isinstance(e, StoreUnavailable | UndecodableMessage))
            raise
        if failures is not None:
            failures.succeeded(parsed)
        for result in results:
            if result.duplicate:
                log.info("trigger recorded already: nothing new written", extra={
                    "tenant": result.tenant, "instanceId": result.instance_id, "triggerId": result.trigger_id,
                    "sequence": result.commit.last_sequence, "outcome": str(result.outcome)})
        if results:
            span.set_attribute("waymark.sequence", results[-1].commit.last_sequence)
            span.set_attribute("waymark.outcome", str(results[-1].outcome))
        return results


def _taken_care_of(parsed: Mapping[str, Any] | None, error: Exception, failures: CommandFailures | None,
                   dequeue_count: int | None, message_id: str | None) -> str | None:
    """"held" or "parked" when the failure policy took the command off the host's hands (the function returns and
    the host completes the message); None when the host must deliver it again."""
    if parsed is None:
        return None
    if failures is None:  # no parked store: what can never succeed is logged and completed, as before
        if isinstance(error, MalformedCommand | InstanceAlreadyExists):
            log.warning("command dropped as it cannot be processed: %s", error)
            return "dropped"
        return None
    if failures.failed(parsed, error, dequeue_count=dequeue_count or 1, message_id=message_id):
        if isinstance(error, RetryLater):
            return "retried"
        return "held" if isinstance(error, StoreUnavailable) else "parked"
    return None


# ---------------------------------------------------------------------------------------------- the host

@dataclass(frozen=True, slots=True)
class SweepOutcome:
    report: SweepReport
    repaired: int  # commits brought into the Cosmos instance index


class AzureHost:
    """Everything one Functions process runs, built from `settings` (see the module docstring). Build it once per
    process (`LazyAzureHost`); `close()` releases it.

    For local runs and tests only: `allow_private_destinations` lets outbound calls (webhooks, `http` actions and
    conditions) go to loopback and private addresses (a Function app refuses them); `create_missing` creates the
    queues, the registry container and each tenant's database and containers when missing (with a key; in Azure,
    main.bicep and tenant.bicep provision them).
    `credential` replaces `DefaultAzureCredential`; `webhook` the webhook publisher.
    """

    def __init__(self, settings: AzureSettings, *, allow_private_destinations: bool = False,
                 create_missing: bool = False, credential: Any = None, webhook: WebhookPublisher | None = None,
                 services: Services | None = None, max_dequeue_count: int = MAX_DEQUEUE_COUNT,
                 configure_observability: bool = True) -> None:
        self.settings = settings
        self.max_dequeue_count = max_dequeue_count
        self.gate = TenantGate(settings.tenant_concurrency)
        self._credential = credential
        self._closers: list[Callable[[], None]] = []
        try:
            if configure_observability:
                self._closers.append(configure_host_logging(settings.log_level))
                configure_tracing(settings.applicationinsights_connection_string)
            self._build(allow_private_destinations=allow_private_destinations, create_missing=create_missing,
                        webhook=webhook, services=services)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **options: Any) -> AzureHost:
        """From the app settings (the process environment); raises `AzureSettingsError` listing every problem."""
        return cls(load_azure_settings(environ), **options)

    def _build(self, *, allow_private_destinations: bool, create_missing: bool, webhook: WebhookPublisher | None,
               services: Services | None) -> None:
        from engine.api import create_app
        from engine.api.feed_routes import feed_router
        from engine.outbound import DestinationPolicy, ManagedIdentityTokens, OutboundClient
        from engine.service.http_port import HttpxPort

        settings = self.settings
        key = settings.cosmos_key
        self.cosmos = cosmos_client(settings.cosmos_endpoint, key=key,
                                    credential=None if key is not None else self.credential,
                                    verify=settings.cosmos_verify_tls)
        self._closers.append(self.cosmos.close)
        self.tenants = CosmosTenantRegistry(self.cosmos, secret=settings.secret,
                                            database=settings.tenant_registry_database,
                                            container=settings.tenant_registry_container, create=create_missing)
        self.router = TenantStoreRouter(
            self.tenants, clients={settings.cosmos_endpoint: self.cosmos}, default_store="cosmos",
            cosmos_endpoint=settings.cosmos_endpoint, cosmos_key=key,
            credential=None if key is not None else self.credential, verify=settings.cosmos_verify_tls,
            auto_create=create_missing, database_prefix=settings.tenant_database_prefix)
        self._closers.append(self.router.close)
        self.queue = self._queue(create_missing)
        self._closers.append(self.queue.close)
        # `auth: {"type": "managedIdentity"}` of actions and webhooks: tokens of the app's own identity.
        self.tokens = ManagedIdentityTokens(factory=lambda: self.credential)
        if services is None:
            http = HttpxPort(OutboundClient(DestinationPolicy(allow_private=allow_private_destinations)),
                             max_seconds=settings.outbound_max_seconds,
                             max_body_bytes=settings.outbound_max_response_bytes,
                             tokens=self.tokens)
            self._closers.append(http.close)
            services = Services(http=http, expression_budget=ExpressionBudget(
                max_steps=settings.expression_max_steps, max_seconds=settings.expression_max_seconds),
                retries=ActionRetries(max_seconds=settings.outbound_action_max_seconds),
                audit_content_limit=settings.audit_content_bytes)
        self.parked_store = TenantRoutedParkedStore(self.router)
        self._closers.append(self.parked_store.close)
        self.timer_index = CosmosTimerIndex(self._timers, auto_create=create_missing)
        self._closers.append(self.timer_index.close)
        # A firing due within the queue's visibility limit is a delayed message; a later one waits in the tenant's
        # `timers` container until `bring_timers_forward` moves it onto the queue.
        self.scheduler = TimerScheduler(self.queue, max_delay=settings.timer_queue_max_delay_seconds,
                                        index=self.timer_index)
        self.engine = Engine(
            TenantRoutedEventStore(self.router), TenantRoutedDefinitionStore(self.router), self.queue,
            services=services, parked_store=self.parked_store, scheduler=self.scheduler,
            sealer=sealer_of(self.tenants, DEFINITION_SECRETS),
            hold=HoldPolicy(base_delay=settings.hold_base_delay_seconds, max_delay=settings.hold_max_delay_seconds,
                            hold_seconds=settings.hold_seconds),
            breakers=CircuitBreakers(threshold=settings.breaker_threshold, cooldown=settings.breaker_cooldown_seconds,
                                     max_cooldown=settings.hold_max_delay_seconds))
        identity = self.credential if key is None else None
        self.feed = ChangeFeed(
            self.engine.events, CosmosSubscriptionStore(self._subscriptions, auto_create=create_missing,
                                                        sealer=sealer_of(self.tenants, "subscription secrets")),
            definitions=self.engine.catalog, static=parse_static_subscriptions(settings.feed_subscriptions),
            tenant_config=self._feed_config, tenants=self._tenant_ids,
            origin=ORIGIN, allow_private_destinations=allow_private_destinations, webhook=webhook,
            webhook_timeout=settings.feed_timeout_seconds, tokens=self.tokens,
            eventgrid=EventGridPublisher(credential_factory=(lambda: identity) if identity is not None else None),
            grace_seconds=settings.outbox_grace_seconds, max_subscriptions=settings.max_subscriptions_per_tenant,
            max_workers=settings.feed_threads, tenant_concurrency=settings.feed_tenant_concurrency,
            lane_concurrency=settings.feed_subscription_concurrency,
            resume_policy=ResumePolicy(settings.feed_resume_after_seconds, settings.feed_resume_max_seconds),
            schema_base=settings.public_url or DEFAULT_SCHEMA_BASE)
        self._closers.append(self.feed.close)
        self.engine.processor.on_commit = self.feed.on_commit
        self.engine.feed_attention = self.feed.attention
        # The API's settings: what create_app reads, from the app settings (no environment of its own is read).
        self.api_settings = Settings.model_construct(
            admin_key=settings.admin_key, secret=settings.secret, max_wait_seconds=settings.max_wait_seconds,
            log_level=settings.log_level, allow_private_destinations=allow_private_destinations,
            feed_grace_seconds=settings.outbox_grace_seconds, feed_origin=ORIGIN, load_samples=False, workers=0,
            rate_limit_per_key=settings.rate_limit_per_key,
            rate_limit_burst_per_key=max(1.0, 2 * settings.rate_limit_per_key),
            rate_limit_per_address=settings.rate_limit_per_address, client_address_hops=settings.client_address_hops)
        self.app = create_app(self.engine, self.tenants, self.api_settings, routers=[feed_router(self.feed)])
        self._closers.append(self.app.state.waymark.close)

    @property
    def credential(self) -> Any:
        """`DefaultAzureCredential` for the app's user-assigned identity (`AZURE_CLIENT_ID`), built on first use."""
        if self._credential is None:
            from azure.identity import DefaultAzureCredential  # only identity-based deployments load it

            self._credential = DefaultAzureCredential(
                managed_identity_client_id=self.settings.managed_identity_client_id)
            self._closers.append(self._credential.close)
        return self._credential

    def _queue(self, create_missing: bool) -> AzureStorageCommandQueue:
        queue = self.settings.queue
        if queue.connection_string is not None:
            return AzureStorageCommandQueue.from_connection_string(
                queue.connection_string, queue.queue_name, max_dequeue_count=self.max_dequeue_count,
                create_queues=create_missing)
        credential = self.credential
        if queue.client_id and queue.client_id != self.settings.managed_identity_client_id:
            from azure.identity import ManagedIdentityCredential  # the trigger's own identity (`__clientId`)

            credential = ManagedIdentityCredential(client_id=queue.client_id)
            self._closers.append(credential.close)
        assert queue.service_uri is not None  # load_azure_settings: one of the two is set
        return AzureStorageCommandQueue.from_account_url(
            queue.service_uri, queue.queue_name, credential, max_dequeue_count=self.max_dequeue_count,
            create_queues=create_missing)

    # -------------------------------------------------------------------------------------- wiring

    def _tenant_ids(self) -> list[str]:
        return [record.id for record in self.tenants.list()]

    def _feed_config(self, tenant: str) -> Mapping[str, Any]:
        """The tenant's configuration for the feed. infra/tenant.bicep records its topic as
        `eventGridTopicEndpoint`; the feed reads `eventGrid: {endpoint, key | keyEnv, types}`. A topic recorded
        only the first way is published to with the app's identity."""
        config = dict(self.router.config(tenant))
        topic = self.router.parsed(tenant).event_grid_topic_endpoint
        if "eventGrid" not in config and topic:
            config["eventGrid"] = {"endpoint": topic}
        return config

    def _subscriptions(self, tenant: str) -> SubscriptionsLocation:
        """The tenant's `subscriptions` container: in its own database, on its account's client."""
        client = getattr(self.router.event_store(tenant), "client", None)
        if client is None:
            raise StoreUnavailable("subscription store", f"tenant {tenant!r} is not on Cosmos DB, the only store of "
                                                         "the Azure host")
        container = self.router.parsed(tenant).subscriptions_container
        return SubscriptionsLocation(client, self.router.location(tenant).database, container)

    def _timers(self, tenant: str) -> TimersLocation:
        """The tenant's `timers` container: in its own database, on its account's client."""
        return TimersLocation(self.router.cosmos_client(tenant), self.router.location(tenant).database,
                              self.router.parsed(tenant).timers_container)

    # -------------------------------------------------------------------------------------- what the functions call

    def process(self, body: bytes | str | Mapping[str, Any], *, message_id: str | None = None,
                dequeue_count: int | None = None) -> list[Result]:
        """The queue function: process the command in a slot of its tenant (or send it back when the tenant is at
        its limit), then wait for the deliveries of its own commits. Raises when the message must stay queued (see
        `process_message`)."""
        parsed = dict(body) if isinstance(body, Mapping) else decode_body(body)
        tenant = tenant_of(parsed) if parsed is not None else None
        with self.gate.slot(tenant) as entered:
            if not entered:
                assert parsed is not None
                copy, delay = deferred_body(parsed)
                self.queue.send(copy, delay=delay)  # if this raises, the host retries the original
                log.info("tenant %s is at its limit of %d command(s) at once: command sent back for %g s", tenant,
                         self.gate.limit, delay, extra={"messageId": message_id, "tenant": tenant})
                return []
            results = process_message(self.engine.processor, parsed if parsed is not None else body,
                                      message_id=message_id, dequeue_count=dequeue_count,
                                      max_dequeue_count=self.max_dequeue_count, failures=self.engine.failures)
            wait = self.settings.delivery_wait_seconds
            commits = [(result.tenant, result.commit.position) for result in results if not result.duplicate]
            if commits and not self.feed.dispatcher.wait_for(commits, wait):
                log.warning("the deliveries of this command's commits are still in flight after %gs: the outbox "
                            "sweeper finishes them", wait, extra={"messageId": message_id, "tenant": tenant})
            return results

    def sweep(self, *, wait: float = SWEEP_WAIT_SECONDS, past_due: bool = False) -> SweepOutcome:
        """The timer function: bring the Cosmos instance index up to every commit, then republish every commit still
        undispatched after the grace period (and restart unfinished catch-ups), waiting up to `wait` seconds."""
        with log_context(function="sweep_outbox"):
            if past_due:
                log.info("the sweep is past due (the app was idle or stopped)")
            try:  # the poison queue's commands of known tenants into their parked stores (a backstop)
                moved = self.engine.parked.drain_poison(self.queue)
                if moved:
                    log.info("%d poisoned command(s) moved to their tenants' parked stores", moved)
            except Exception as e:
                log.warning("moving poisoned commands to the parked stores failed: %s", e)
            report = self.feed.sweeper.sweep_once(wait=wait)  # repairs each tenant's Cosmos index first
            log.info("outbox sweep: %d commit(s) republished (%d unfinished), %d catch-up(s), %d commit(s) indexed",
                     report.republished, report.unfinished, report.catch_ups, report.repaired)
            return SweepOutcome(report, report.repaired)

    def bring_timers_forward(self) -> int:
        """The timer function: move every tenant's timers that are now due within the queue's limit from its
        `timers` container onto the queue (with the rest of their delay). One query per tenant; a tenant whose
        storage fails is logged and left for the next run, the others go on. How many moved."""
        moved = 0
        with log_context(function="bring_timers_forward"):
            for tenant in self._tenant_ids():
                try:
                    moved += self.scheduler.bring_forward(tenant)
                except StoreUnavailable as e:
                    log.warning("timers of tenant %s not brought forward this time: %s", tenant, e)
        return moved

    def close(self) -> None:
        """Release everything (the last built first). Idempotent."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()


# ---------------------------------------------------------------------------------------------- one per process

class LazyAzureHost:
    """The process's one `AzureHost`, built on first use (thread-safe) by `build` — by default from the app
    settings in the environment. A failed build is not kept: the next use tries again."""

    def __init__(self, build: Callable[[], AzureHost] = AzureHost.from_environment) -> None:
        self._build = build
        self._host: AzureHost | None = None
        self._lock = threading.Lock()
        self.asgi = LazyAsgiApp(self)

    def get(self) -> AzureHost:
        host = self._host
        if host is not None:
            return host
        with self._lock:
            if self._host is None:
                try:
                    self._host = self._build()
                except Exception as e:
                    log.error("the Waymark host could not be built: %s", e)
                    raise
            return self._host

    @property
    def built(self) -> AzureHost | None:
        return self._host

    def use(self, build: Callable[[], AzureHost]) -> None:
        """Build with `build` from now on (the current host, if any, is closed): for tests and local tools."""
        with self._lock:
            host, self._host = self._host, None
            self._build = build
        if host is not None:
            host.close()

    def close(self) -> None:
        with self._lock:
            host, self._host = self._host, None
        if host is not None:
            host.close()


class LazyAsgiApp:
    """The ASGI app `func.AsgiFunctionApp` serves: the lifespan is answered here (there is nothing to start), and
    each request goes to the FastAPI app of the process's host, built (off the event loop) on the first one."""

    def __init__(self, host: LazyAzureHost) -> None:
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        host = self.host.built
        if host is None:
            host = await asyncio.to_thread(self.host.get)
        await host.app(scope, receive, send)
