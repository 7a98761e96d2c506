"""The queries in one instance's partition that both appending and loading make: its head, and the commit of a
trigger."""

from __future__ import annotations

from typing import Any

from engine.domain import Instance
from engine.stores.cosmos.containers import Silo, Silos
from engine.stores.cosmos.documents import instance_of, trigger_key
from engine.stores.cosmos.remembered import Remembered


def query_head(silos: Silos, remembered: Remembered, tenant: str, silo: Silo, instance_id: str) -> Instance | None:
    """The instance after its newest commit (one `TOP 1` query, whatever the length of its history), remembered."""
    docs = silos.query(tenant, silo.events, "SELECT TOP 1 c.instance FROM c WHERE c.instanceId = @id"
                       " AND c.kind = 'commit' ORDER BY c.firstSequence DESC",
                       partition=instance_id, id=instance_id)
    if not docs:
        remembered.drop_head((tenant, instance_id))
        return None
    instance = instance_of(docs[0])
    remembered.remember_head((tenant, instance_id), instance)
    return instance


def trigger_doc(silos: Silos, tenant: str, silo: Silo, instance_id: str, trigger_id: str) -> dict[str, Any] | None:
    docs = silos.query(tenant, silo.events, "SELECT * FROM c WHERE c.instanceId = @id"
                       " AND c.kind = 'commit' AND c.triggerKey = @key",
                       partition=instance_id, id=instance_id, key=trigger_key(trigger_id, 0))
    return docs[0] if docs else None
