"""The Cosmos DB event and definition stores: per tenant a database, with containers `events` and `definitions`.

Layout (docs/cosmos.md tells the whole story and the costs)::

    database  waymark-{tenant}              (or what the tenant's configuration names: `resolve(tenant)`)
    ├── events       partition /instanceId, unique key /triggerKey (unique per partition = per instance)
    │   ├── {instanceId}:{firstSequence:010d}   kind "commit": the events of one commit, the instance after it,
    │   │                                       its feed position, `dispatched` and `indexed` flags
    │   ├── {instanceId}:index                  kind "index": the instance as of its newest *indexed* commit
    │   ├── ~feed:position  (partition ~feed)   kind "counter": the tenant's last feed position
    │   ├── ~feed:outbox    (partition ~feed)   kind "outbox": which commits are dispatched (outbox.py)
    │   └── ~gap:{position:012d} (partition ~feed) kind "gap": a position that will never hold a commit
    └── definitions  partition /workflowId
        └── {workflowId}:{version:08d}          kind "definition": one document per version, never overwritten

Each module tells one part of the story:

- `events.py`: `CosmosEventStore`, the port's face, and **loading** (a load is one query, or none in the
  processor's find-then-decide);
- `appends.py`: **commits**, one document created per commit, and what a refused create means;
- `positions.py`: **feed positions**, the tenant's counter, positions kept for a retry, and gap markers;
- `feed.py`: the commits in feed order (`read_feed`, `undispatched`) and the **outbox side**: marking commits
  dispatched, the index repair and compaction; `outbox.py`: the tenant's outbox document;
- `index.py` and `listing.py`: **the instance index** and the listings (`list_instances`, `interested`) read from it;
- `remembered.py`: what a store remembers of its own reads and writes (heads, triggers, where commits are);
- `documents.py`: the documents' ids and encodings; `containers.py`: a tenant's containers (`ensure_tenant`, the
  indexing policies) and the translation of driver errors; `definitions.py`: `CosmosDefinitionStore`.

Errors are translated at the edge: 409/412 become `ConcurrencyConflict`/`DuplicateTrigger` where they mean that,
a 404 on a tenant's database or container `TenantNotFound`, and everything else (429 after the SDK's throttling
retries, 5xx, timeouts, connection refused) `StoreUnavailable`, which keeps the command on its queue.
"""

from engine.stores.cosmos.containers import (
    DEFINITIONS_INDEXING_POLICY,
    EVENTS_INDEXING_POLICY,
    EVENTS_UNIQUE_KEY_POLICY,
    ensure_tenant,
)
from engine.stores.cosmos.definitions import CosmosDefinitionStore
from engine.stores.cosmos.events import CosmosEventStore

__all__ = [
    "DEFINITIONS_INDEXING_POLICY",
    "EVENTS_INDEXING_POLICY",
    "EVENTS_UNIQUE_KEY_POLICY",
    "CosmosDefinitionStore",
    "CosmosEventStore",
    "ensure_tenant",
]
