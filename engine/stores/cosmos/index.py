"""The instance index of a Cosmos tenant (what `list_instances` and `interested` read: listing.py).

One `index` document per instance, a projection written *after* the commit: by `mark_dispatched` (the outbox marks
every commit, in batches) or by `repair_index` (for a sweeper), each a conditional patch that only moves it forward,
and only then is the commit marked: in the tenant's outbox document (`mark_dispatched`, one request for the whole
batch, see outbox.py) or on the commit itself (`indexed`, by the repair). Both are in feed.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from azure.cosmos import exceptions

from engine.domain import Instance
from engine.stores.cosmos.containers import Silo, Silos
from engine.stores.cosmos.documents import Located, encode, index_id


def index(silos: Silos, tenant: str, silo: Silo, located: Sequence[Located]) -> None:
    """Move each instance's index document forward to the newest of these states (never backward: the patch
    only applies while the document is older)."""
    newest: dict[str, Instance] = {}
    for entry in located:
        known = newest.get(entry.instance_id)
        if known is None or entry.instance.version > known.version:
            newest[entry.instance_id] = entry.instance
    for instance_id, instance in newest.items():
        _write_index(silos, tenant, silo, instance_id, instance)


def _write_index(silos: Silos, tenant: str, silo: Silo, instance_id: str, instance: Instance) -> None:
    fields = {"instance": encode(instance.to_dict()), "version": instance.version,
              "status": str(instance.status), "state": instance.state, "workflowId": instance.workflow_id,
              "interests": list(instance.interests)}
    operations = [{"op": "set", "path": f"/{name}", "value": value} for name, value in fields.items()]
    predicate = f"from c where c.version < {int(instance.version)}"
    doc_id = index_id(instance_id)
    with silos.translated(tenant):
        for _ in range(3):
            try:
                silo.events.patch_item(doc_id, instance_id, operations, filter_predicate=predicate,
                                       no_response=True)
                return
            except exceptions.CosmosAccessConditionFailedError:
                return  # the index is at this version or newer already
            except exceptions.CosmosResourceNotFoundError:
                pass
            try:
                silo.events.create_item({"id": doc_id, "kind": "index", "instanceId": instance_id,
                                         "triggerKey": "~index", **fields}, no_response=True)
                return
            except exceptions.CosmosResourceExistsError:
                continue  # created meanwhile by another indexer: patch it


def patch_commit(silos: Silos, tenant: str, silo: Silo, doc_id: str, instance_id: str,
                 operations: list[dict[str, Any]]) -> None:
    """Flag a commit document (`indexed`, `dispatched`); a commit gone meanwhile is no error."""
    with silos.translated(tenant), contextlib.suppress(exceptions.CosmosResourceNotFoundError):
        silo.events.patch_item(doc_id, instance_id, operations, no_response=True)
