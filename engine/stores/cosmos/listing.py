"""The listings of a Cosmos tenant's instances, read from the instance index (index.py).

Commits neither marked nor indexed (just appended, or a crash between commit and index) are merged in by every
listing from a query made before the index query, so a listing reflects every commit made before it started
(read-your-writes); an index left behind only costs listings that query's size until it is repaired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain import Instance
from engine.stores.base import Page
from engine.stores.checks import decode_continuation, encode_continuation
from engine.stores.cosmos.containers import Silo, Silos
from engine.stores.cosmos.documents import instance_of
from engine.stores.cosmos.feed import outbox_state


def list_instances(silos: Silos, tenant: str, *, status: str | None, workflow_id: str | None, state: str | None,
                   limit: int, continuation: str | None) -> Page:
    after = decode_continuation(continuation)
    silo = silos.get(tenant)
    where, parameters = _index_filter({"status": status, "workflowId": workflow_id, "state": state}, after)
    pending = _pending(silos, tenant, silo)  # before the index: see _pending
    docs = silos.query(tenant, silo.events, f"SELECT TOP {int(limit) + 1} c.instanceId, c.instance FROM c"
                       f" WHERE {' AND '.join(where)} ORDER BY c.instanceId", **parameters)
    settled = _settle(silos, tenant, silo, pending)
    # Index rows are complete up to the last one fetched; instances with commits not indexed yet are taken
    # at their current state, in or out of the page.
    bound = None if len(docs) <= limit else docs[-1]["instanceId"]
    candidates = {doc["instanceId"]: instance_of(doc) for doc in docs}
    for instance_id, instance in settled.items():
        if (after is None or instance_id > after) and (bound is None or instance_id <= bound):
            candidates[instance_id] = instance

    def matches(instance: Instance) -> bool:
        return ((status is None or str(instance.status) == status)
                and (workflow_id is None or instance.workflow_id == workflow_id)
                and (state is None or instance.state == state))

    matching = sorted((i for i in candidates.values() if matches(i)), key=lambda instance: instance.id)
    items = matching[:limit]
    if len(matching) > limit:
        return Page(items, encode_continuation(items[-1].id))
    return Page(items, None if bound is None else encode_continuation(bound))


def _index_filter(filters: Mapping[str, str | None], after: str | None) -> tuple[list[str], dict[str, Any]]:
    """The WHERE clauses and parameters of a listing's index query."""
    where = ["c.kind = 'index'"]
    parameters: dict[str, Any] = {}
    for field_name, value in filters.items():
        if value is not None:
            where.append(f"c.{field_name} = @{field_name}")
            parameters[field_name] = str(value)
    if after is not None:
        where.append("c.instanceId > @after")
        parameters["after"] = after
    return where, parameters


def interested(silos: Silos, tenant: str, subjects: Sequence[str]) -> list[str]:
    silo = silos.get(tenant)
    wanted = list(dict.fromkeys(subjects))
    pending = _pending(silos, tenant, silo)  # before the index: see _pending
    docs = silos.query(tenant, silo.events, "SELECT c.instanceId FROM c WHERE c.kind = 'index' AND"
                       " EXISTS(SELECT VALUE s FROM s IN c.interests WHERE ARRAY_CONTAINS(@subjects, s))",
                       subjects=wanted)
    found = {doc["instanceId"] for doc in docs} - pending.keys()
    subject_set = set(wanted)
    found.update(instance_id for instance_id, instance in _settle(silos, tenant, silo, pending).items()
                 if subject_set.intersection(instance.interests))
    return sorted(found)


def _pending(silos: Silos, tenant: str, silo: Silo) -> dict[str, Instance]:
    """The newest state of every instance with commits not indexed yet.

    Read *before* the index: a commit not indexed then is in here, and one indexed then is in the index from
    then on (the index only moves forward), so a listing sees every commit made before it started, even while
    the outbox is indexing."""
    state = outbox_state(silos, tenant, silo)  # a commit marked dispatched there is indexed
    docs = silos.query(tenant, silo.events, "SELECT c.instanceId, c.lastSequence, c.instance FROM c"
                       " WHERE c.kind = 'commit' AND c.indexed = false AND c.position > @through"
                       " AND NOT ARRAY_CONTAINS(@marked, c.position)",
                       through=state.through, marked=state.marked_list)
    newest: dict[str, dict[str, Any]] = {}
    for doc in docs:
        known = newest.get(doc["instanceId"])
        if known is None or doc["lastSequence"] > known["lastSequence"]:
            newest[doc["instanceId"]] = doc
    return {instance_id: instance_of(doc) for instance_id, doc in newest.items()}


def _settle(silos: Silos, tenant: str, silo: Silo, pending: Mapping[str, Instance]) -> dict[str, Instance]:
    """The current state of each pending instance: its pending state, or its index document if that has
    moved past it since (read after the listing's index query)."""
    if not pending:
        return {}
    settled = dict(pending)
    for doc in silos.query(tenant, silo.events, "SELECT c.instanceId, c.instance FROM c WHERE c.kind ="
                           " 'index' AND ARRAY_CONTAINS(@ids, c.instanceId)", ids=sorted(pending)):
        indexed = instance_of(doc)
        if indexed.version > settled[doc["instanceId"]].version:
            settled[doc["instanceId"]] = indexed
    return settled
