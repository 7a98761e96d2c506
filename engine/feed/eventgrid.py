"""The Azure Event Grid publisher: a commit's CloudEvents sent to the tenant's Event Grid topic in one batch.

The real `azure-eventgrid` `EventGridPublisherClient` does the sending (CloudEvent 1.0 schema, so the body is
`application/cloudevents-batch+json`). The topic comes from the tenant's configuration:

    {"eventGrid": {"endpoint": "https://<topic>.<region>-1.eventgrid.azure.net/api/events",
                   "key": "<access key>" | "keyEnv": "<environment variable holding it>",
                   "types": [...]}}                       # optional filter, like a webhook subscription's

With a key the client authenticates with `AzureKeyCredential` (the `aeg-sas-key` header); without one, with
`DefaultAzureCredential` (managed identity in Azure; imported only then, so key-only deployments never load
`azure-identity`). One client per (endpoint, credential) for the life of the process, as the Azure SDK
guidelines ask. The SDK's own retries are off (`retry_total=0`: they would sleep in a delivery thread): the
outbox retries what fails on its own schedule, so fresh commits keep going to the topic while an old one waits for
its next attempt. A 400, 401, 403, 404 or 413 is not worth retrying at once (the key, the role or the event is
wrong); anything else (429, 5xx, a transport error) is.
The topic endpoint is set by the platform operator at onboarding, not by the tenant, so it is not subject to the
webhook destination policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cloudevents.core.base import BaseCloudEvent

from engine.feed.cloudevents import to_batch
from engine.feed.subscriptions import Subscription
from engine.feed.webhook import DeliveryResult

__all__ = ["EventGridPublisher"]

_FINAL_STATUSES = frozenset({400, 401, 403, 404, 413})


class EventGridPublisher:
    def __init__(self, *, retry_total: int = 0, timeout: float = 10.0,
                 credential_factory: Callable[[], Any] | None = None) -> None:
        self.retry_total = retry_total
        self.timeout = timeout
        self.credential_factory = credential_factory
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: str, key: str | None) -> Any:
        from azure.eventgrid import EventGridPublisherClient

        identity = (endpoint, hashlib.sha256(key.encode()).hexdigest() if key else "")
        with self._lock:
            client = self._clients.get(identity)
            if client is None:
                if key:
                    from azure.core.credentials import AzureKeyCredential

                    credential: Any = AzureKeyCredential(key)
                elif self.credential_factory is not None:
                    credential = self.credential_factory()
                else:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                client = self._clients[identity] = EventGridPublisherClient(endpoint, credential)
            return client

    def publish(self, subscription: Subscription, events: Sequence[BaseCloudEvent]) -> DeliveryResult:
        """Send the events as one batch. Never raises: a failure is a DeliveryResult the outbox counts."""
        if not events:
            return DeliveryResult(True)
        try:
            client = self._client(subscription.endpoint, subscription.secret)
            # The events go as their structured JSON (the SDK sends CloudEvent dicts as they are), and the options
            # per call: the client drops those given to its constructor (azure-eventgrid 4.22 does not pass them on
            # to the client it wraps).
            client.send(json.loads(to_batch(events)), retry_total=self.retry_total,
                        connection_timeout=self.timeout, read_timeout=self.timeout)
        except Exception as e:  # any SDK, auth or transport error: counted, retried by the outbox
            status = getattr(e, "status_code", None)
            where = f" ({status})" if status else ""
            return DeliveryResult(False, error=f"Event Grid topic {subscription.endpoint}{where}: "
                                               f"{type(e).__name__}: {e}"[:1000], attempts=1,
                                  retryable=status not in _FINAL_STATUSES)
        return DeliveryResult(True, attempts=1, delivered=len(events))

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                with contextlib.suppress(Exception):  # closing is best effort
                    client.close()
            self._clients.clear()
