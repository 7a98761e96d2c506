"""Feed positions of a Cosmos tenant.

Cosmos has no global sequence: a per-tenant counter document is incremented with a patch (`incr`, atomic on the
server) before the create — one request per commit and one hot document per tenant. A position whose create lost a
race is kept for the retry that follows (this store's next append within `SPARE_SECONDS`); one known never to be
used (the trigger was recorded already, a kept one expired, the store closed) gets a `gap` marker. A position lost
otherwise (a crash between the increment and the create, a create whose outcome is unknown) is a gap without a
marker. `read_feed` (feed.py) returns commits in position order but stops before an unmarked gap younger than
`gap_grace` seconds (a commit may still be on its way there) and steps over older ones: every commit is returned
exactly once, in a stable order, at the cost of a pull feed that can wait up to `gap_grace` behind a lost position.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import AzureError
from azure.cosmos import exceptions

from engine.stores.cosmos.containers import Silo, Silos
from engine.stores.cosmos.documents import now

SPARE_SECONDS = 5.0  # how long a position whose create lost its race may still be used
CREATE_TIMEOUT_SECONDS = 10.0  # absolute timeout of a commit's create: bounds when a position can still appear
GAP_GRACE_SECONDS = 30.0  # > SPARE_SECONDS + CREATE_TIMEOUT_SECONDS + clock skew between writers and readers

FEED_PARTITION = "~feed"
_COUNTER_ID = "~feed:position"


class FeedPositions:
    """Takes positions from each tenant's counter, keeps those given back for a retry, and marks gaps."""

    def __init__(self, silos: Silos) -> None:
        self._silos = silos
        self._lock = threading.Lock()
        self._spares: dict[str, list[tuple[int, float]]] = {}

    def close(self) -> None:
        """Mark the positions kept for a retry that never came as gaps (best effort)."""
        with self._lock:
            spares, self._spares = self._spares, {}
        for tenant, kept in spares.items():
            with contextlib.suppress(Exception):
                self.abandon(self._silos.get(tenant), [position for position, _ in kept])

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._spares.pop(tenant, None)

    def take(self, tenant: str, silo: Silo, count: int) -> list[tuple[int, float]]:
        """`count` feed positions of the tenant, in order, each with when it was taken from the counter: spare ones
        first (taken by an append that lost its race, less than SPARE_SECONDS ago), then the counter's next ones,
        all in one request (`incr` by the number still wanted)."""
        moment = time.monotonic()
        taken = self._take_spares(tenant, silo, count, moment)
        wanted = count - len(taken)
        if not wanted:
            return taken
        try:
            last = self._increment(tenant, silo, wanted)
        except BaseException:
            for position, taken_at in taken:
                self.give_back(tenant, position, taken_at)
            raise
        return sorted(taken) + [(position, moment) for position in range(last - wanted + 1, last + 1)]

    def _take_spares(self, tenant: str, silo: Silo, count: int, moment: float) -> list[tuple[int, float]]:
        """Up to `count` spare positions still young enough; the expired ones met on the way are marked as gaps."""
        expired: list[int] = []
        taken: list[tuple[int, float]] = []
        with self._lock:
            spares = self._spares.get(tenant)
            while spares and len(taken) < count:
                position, taken_at = spares.pop(0)
                if moment - taken_at < SPARE_SECONDS:
                    taken.append((position, taken_at))
                else:
                    expired.append(position)
        self.abandon(silo, expired)
        return taken

    def _increment(self, tenant: str, silo: Silo, wanted: int) -> int:
        """Move the tenant's counter on by `wanted` (creating it on first use); its new value."""
        operations: list[dict[str, Any]] = [{"op": "incr", "path": "/next", "value": wanted}]
        with self._silos.translated(tenant):
            try:
                counter = silo.events.patch_item(_COUNTER_ID, FEED_PARTITION, operations)
            except exceptions.CosmosResourceNotFoundError:
                # The first commit of the tenant (or a container provisioned by infra/tenant.bicep).
                with contextlib.suppress(exceptions.CosmosResourceExistsError):
                    silo.events.create_item({"id": _COUNTER_ID, "instanceId": FEED_PARTITION,
                                             "kind": "counter", "triggerKey": "~position", "next": 0})
                counter = silo.events.patch_item(_COUNTER_ID, FEED_PARTITION, operations)
        return int(counter["next"])

    def abandon(self, silo: Silo, positions: Sequence[int]) -> None:
        """Mark positions that will never hold a commit, so `read_feed` need not wait `gap_grace` at them. Best
        effort: a marker not written only makes readers wait at that gap."""
        for position in positions:
            with contextlib.suppress(AzureError):
                silo.events.create_item({"id": f"~gap:{position:012d}", "instanceId": FEED_PARTITION,
                                         "kind": "gap", "triggerKey": f"~gap:{position}", "position": position,
                                         "committedAt": now()}, no_response=True)

    def give_back(self, tenant: str, position: int, taken_at: float) -> None:
        """Keep a position whose create lost its race for the retry that follows."""
        with self._lock:
            spares = self._spares.setdefault(tenant, [])
            spares.append((position, taken_at))
            spares.sort()
