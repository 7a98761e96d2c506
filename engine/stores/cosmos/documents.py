"""The documents of a tenant's events container as text: their ids, and commits and instances in and out of them.

A commit document carries its events and the instance after it as JSON text (ASCII), so numbers beyond 2**53 and
lone surrogates round-trip exactly, and Cosmos does not index them (containers.py's indexing policy)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_from_bytes

from engine.domain import Commit, Event, Instance, timestamp
from engine.stores.cosmos.outbox import OutboxState

encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode  # ASCII: exact round trips
decode = json.loads
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def id_part(value: str) -> str:
    """A string as part of a Cosmos id (which may not hold / \\ ? #): kept when plain, else percent-encoded, else
    (too long) hashed. Injective on plain and encoded forms: '%' and '~' never occur in a plain one."""
    if _SAFE_ID.fullmatch(value):
        return value
    encoded = quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="._:-").replace("~", "%7E")
    if len(encoded) <= 200:
        return encoded
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def commit_id(instance_id: str, first_sequence: int) -> str:
    return f"{id_part(instance_id)}:{first_sequence:010d}"


def index_id(instance_id: str) -> str:
    return f"{id_part(instance_id)}:index"


def trigger_key(trigger_id: str | None, first_sequence: int) -> str:
    return f"t:{trigger_id}" if trigger_id is not None else f"s:{first_sequence}"


def now() -> str:
    return timestamp(datetime.now(UTC))


def age_seconds(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - moment).total_seconds()


def instance_of(doc: Mapping[str, Any]) -> Instance:
    return Instance.from_dict(decode(doc["instance"]))


def commit_of(doc: Mapping[str, Any], outbox: OutboxState | None = None) -> Commit:
    events = tuple(Event.from_dict(event) for event in decode(doc["events"]))
    position, flagged = int(doc["position"]), bool(doc.get("dispatched"))
    return Commit(doc["instanceId"], events, instance_of(doc), position=position,
                  dispatched=flagged if outbox is None else outbox.dispatched(position, flagged))


@dataclass(frozen=True, slots=True)
class Located:
    """Where a commit is, and the instance after it: what marking and indexing it need."""

    position: int
    instance_id: str
    doc_id: str
    instance: Instance


def located_of(doc: Mapping[str, Any]) -> Located:
    return Located(int(doc["position"]), doc["instanceId"], doc["id"], instance_of(doc))
