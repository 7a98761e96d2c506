"""Stored events as CloudEvents 1.0: one CloudEvent per stored event, built with the `cloudevents` SDK (2.x).

    id          {instanceId}:{sequence}        stable: a subscriber dedupes on it
    source      /tenants/{t}/workflows/{w}/instances/{i}
    type        io.waymark.workflow.instance.{created|transitioned|completed|faulted|recovered|terminated|
                                              trigger-ignored|trigger-rejected|timer-scheduled|timer-fired|
                                              timer-cancelled|migrated}
    subject     the instance id
    time        the event's `at`
    sequence    extension (integer): the event's sequence in its instance, 1, 2, 3 …
    tenantid    extension
    dataschema  {base}/schemas/events/{type}.json: the JSON Schema of `data` (engine/schemas/events/), `base`
                being the server's public URL (`schema_base`)

`data` is self-contained: one event alone tells the whole change (workflow, trigger, transition, previous and new
state, status and context, and the fault, recovery or termination details where they apply).

Previous and new
----------------
A commit carries the instance as it is *after* it (`Commit.state`); the previous values need the instance
*before* it. Within a commit each event gets its own before/after (folding event by event with `apply`), so
`transitioned` then `completed` of one commit read Waiting → Waiting, then Waiting → Complete.

The instance before a commit is found, cheapest first, and always exactly (never guessed):

1. a commit at sequence 1 has none;
2. given by the caller (the pull feed passes the state of the previous commit of the same instance when it is in
   the same page), or held in a small LRU cache of the last state seen per instance — the live path: the
   dispatcher sees every commit of its process in order, so commit N finds commit N-1's state there;
3. otherwise, the commit that recorded the previous event: read that one event (`read(after=first-2,
   limit=1)`), then `find_trigger` with its trigger id returns its commit, whose `state` is exactly the
   instance before ours (checked: its version must be ours minus one) — two indexed reads, whatever the
   history's length;
4. only when that does not find it (an event without a trigger id, or the last event of a retry recovery,
   which carries the retried trigger's id and so leads to the older commit that faulted) the events before the
   commit are folded from the start — O(history), and rare.

Rejected alternative: undoing a commit from the state after it (a `TransitionApplied` knows `from` and the keys
it set or removed). It is cheap but cannot be truthful: the old values of overwritten and removed context keys
are not in the event, and `Recovered`/`Terminated` do not record the status they left. A feed that guesses
would mislead exactly the subscribers (dashboards, audits) it is for.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from engine.domain import Commit, Event, EventType, Instance, apply, fold
from engine.schemas import DEFAULT_SCHEMA_BASE, dataschema
from engine.stores.base import EventStore

__all__ = [
    "ALL_TYPES", "BATCH_CONTENT_TYPE", "CE_TYPES", "STRUCTURED_CONTENT_TYPE", "TYPE_PREFIX", "CloudEvent",
    "CloudEventMapper", "binary_message", "commit_events", "event_id", "event_source", "from_batch", "parse_http",
    "structured_message", "to_batch",
]

TYPE_PREFIX: Final = "io.waymark.workflow.instance."
CE_TYPES: Final[Mapping[EventType, str]] = {
    EventType.CREATED: TYPE_PREFIX + "created",
    EventType.TRANSITION_APPLIED: TYPE_PREFIX + "transitioned",
    EventType.COMPLETED: TYPE_PREFIX + "completed",
    EventType.FAULTED: TYPE_PREFIX + "faulted",
    EventType.RECOVERED: TYPE_PREFIX + "recovered",
    EventType.TERMINATED: TYPE_PREFIX + "terminated",
    EventType.TRIGGER_IGNORED: TYPE_PREFIX + "trigger-ignored",
    EventType.TRIGGER_REJECTED: TYPE_PREFIX + "trigger-rejected",
    EventType.TIMER_SCHEDULED: TYPE_PREFIX + "timer-scheduled",
    EventType.TIMER_FIRED: TYPE_PREFIX + "timer-fired",
    EventType.TIMER_CANCELLED: TYPE_PREFIX + "timer-cancelled",
    EventType.MIGRATED: TYPE_PREFIX + "migrated",
}
ALL_TYPES: Final = frozenset(CE_TYPES.values())
STRUCTURED_CONTENT_TYPE: Final = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
DATA_CONTENT_TYPE: Final = "application/json"

_FORMAT = JSONFormat()


def event_id(instance_id: str, sequence: int) -> str:
    return f"{instance_id}:{sequence}"


def event_source(tenant: str, workflow_id: str, instance_id: str) -> str:
    # Ids are restricted by their validators, but a source is a URI-reference: quote to be sure it stays one.
    return (f"/tenants/{quote(tenant, safe='')}/workflows/{quote(workflow_id, safe='')}"
            f"/instances/{quote(instance_id, safe='')}")


def _time(at: str) -> datetime:
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is None:  # stored times are UTC with a Z; be lenient with a naive one
        moment = moment.replace(tzinfo=UTC)
    return moment


def _data(event: Event, before: Instance | None, after: Instance, transition_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "instanceId": event.instance_id,
        "sequence": event.sequence,
        "workflowId": after.workflow_id,
        "workflowVersion": after.workflow_version,
        "triggerId": event.trigger_id,
        "transitionId": transition_id,
        "previousState": before.state if before is not None else None,
        "newState": after.state,
        "previousStatus": str(before.status) if before is not None else None,
        "newStatus": str(after.status),
        "previousContext": dict(before.context) if before is not None else None,
        "newContext": dict(after.context),
    }
    stored = event.data
    match event.type:
        case EventType.TRANSITION_APPLIED:
            data["topic"] = stored.get("topic")
        case EventType.FAULTED:
            data["fault"] = {"where": stored.get("where"), "errorType": stored.get("errorType"),
                             "message": stored.get("message")}
        case EventType.RECOVERED:
            data["by"] = stored.get("by", stored.get("who"))
            data["reason"] = stored.get("reason", stored.get("why"))
            data["mode"] = stored.get("mode", stored.get("how"))
            if "toSequence" in stored:
                data["toSequence"] = stored["toSequence"]
        case EventType.TERMINATED:
            data["by"] = stored.get("by", stored.get("who"))
            data["reason"] = stored.get("reason", stored.get("why"))
        case EventType.TRIGGER_IGNORED | EventType.TRIGGER_REJECTED:
            data["reason"] = stored.get("reason")
            data["topic"] = stored.get("topic")
            for key in ("content", "contentDigest", "contentSize"):  # what was received (engine/domain/audit.py)
                if key in stored:
                    data[key] = stored[key]
        case EventType.TIMER_SCHEDULED | EventType.TIMER_FIRED | EventType.TIMER_CANCELLED:
            trigger = stored.get("trigger") or {}
            data["timer"] = {"timerId": stored.get("timerId"), "kind": stored.get("kind"),
                             "entrySequence": stored.get("entrySequence"), "n": stored.get("n"),
                             "dueAt": stored.get("dueAt"), "topic": trigger.get("topic", stored.get("topic")),
                             "firingTriggerId": trigger.get("id", stored.get("triggerId"))}
            if "reason" in stored:
                data["reason"] = stored["reason"]
        case EventType.MIGRATED:
            for key in ("fromVersion", "toVersion", "stateMap", "by", "reason"):
                data[key] = stored.get(key)
        case _:
            pass
    return data


def commit_events(tenant: str, commit: Commit, before: Instance | None, *,
                  schema_base: str = DEFAULT_SCHEMA_BASE) -> list[CloudEvent]:
    """The CloudEvents of one commit, given the instance before it (None for a commit that creates it).
    `schema_base`: the public URL of the server, which serves the `dataschema` of each event."""
    result: list[CloudEvent] = []
    transition_id: str | None = None
    current = before
    for event in commit.events:
        after = apply(current, event)
        if event.type in (EventType.TRANSITION_APPLIED, EventType.FAULTED):
            transition_id = event.data.get("transition")
        attributes: dict[str, Any] = {
            "id": event_id(event.instance_id, event.sequence),
            "source": event_source(tenant, after.workflow_id, event.instance_id),
            "type": CE_TYPES[event.type],
            "subject": event.instance_id,
            "time": _time(event.at),
            "datacontenttype": DATA_CONTENT_TYPE,
            "dataschema": dataschema(schema_base, CE_TYPES[event.type]),
            "sequence": event.sequence,
            "tenantid": tenant,
        }
        # Completed follows the TransitionApplied of the same commit: it carries that transition's id.
        result.append(CloudEvent(attributes, _data(event, current, after, transition_id)))
        current = after
    return result


# ---------------------------------------------------------------------------------------------- the wire

def structured_message(event: BaseCloudEvent) -> HTTPMessage:
    """Structured mode: the whole event as `application/cloudevents+json`."""
    return to_structured(event, _FORMAT)


def binary_message(event: BaseCloudEvent) -> HTTPMessage:
    """Binary mode: attributes as `ce-*` headers, `data` as the `application/json` body."""
    return to_binary(event, _FORMAT)


def to_batch(events: Iterable[BaseCloudEvent]) -> bytes:
    """The JSON batch format (`application/cloudevents-batch+json`): an array of structured events.

    The SDK has no batch writer; each element is the SDK's own structured JSON, so one parser reads both.
    """
    return b"[" + b",".join(_FORMAT.write(event) for event in events) + b"]"


def from_batch(body: bytes | str) -> list[BaseCloudEvent]:
    items = json.loads(body)
    if not isinstance(items, list):
        raise ValueError("a CloudEvents JSON batch is an array")
    return [_FORMAT.read(None, json.dumps(item)) for item in items]


def parse_http(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """A CloudEvent from an HTTP request in either mode (what a subscriber does; used by the samples and tests)."""
    from cloudevents.core.bindings.http import from_http

    return from_http(HTTPMessage({k.lower(): v for k, v in headers.items()}, body), _FORMAT)


# ---------------------------------------------------------------------------------------------- previous state

_UNKNOWN: Final[Any] = object()


class CloudEventMapper:
    """Maps commits to CloudEvents, finding the instance before each commit as the module docstring says.

    Thread-safe; one per process is enough (the LRU cache is what makes the live path cheap).
    """

    def __init__(self, store: EventStore, *, cache_size: int = 10_000,
                 schema_base: str = DEFAULT_SCHEMA_BASE) -> None:
        self.store = store
        self.cache_size = cache_size
        self.schema_base = schema_base
        self._cache: OrderedDict[tuple[str, str], Instance] = OrderedDict()
        self._lock = threading.Lock()
        self.lookups = 0  # instances found by reading the store rather than given or cached (tests and tuning)
        self.folds = 0  # of those, found only by folding the history from the start

    def remember(self, tenant: str, *instances: Instance) -> None:
        with self._lock:
            for instance in instances:
                key = (tenant, instance.id)
                known = self._cache.get(key)
                if known is None or known.version <= instance.version:
                    self._cache[key] = instance
                    self._cache.move_to_end(key)
                    if len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)

    def before(self, tenant: str, commit: Commit, given: Instance | None = _UNKNOWN) -> Instance | None:
        """The instance just before `commit` (None when the commit creates it)."""
        wanted = commit.first_sequence - 1
        if wanted == 0:
            return None
        if given is not _UNKNOWN and given is not None and given.version == wanted:
            return given
        with self._lock:
            cached = self._cache.get((tenant, commit.instance_id))
        if cached is not None and cached.version == wanted:
            return cached
        self.lookups += 1
        previous = self.store.read(tenant, commit.instance_id, after=wanted - 1, limit=1)
        if previous and previous[0].trigger_id is not None:
            found = self.store.find_trigger(tenant, commit.instance_id, previous[0].trigger_id)
            if found is not None and found.state.version == wanted:
                return found.state
        self.folds += 1
        return fold(None, self.store.read(tenant, commit.instance_id, limit=wanted))

    def events(self, tenant: str, commit: Commit, before: Instance | None = _UNKNOWN) -> list[CloudEvent]:
        """The CloudEvents of one commit; remembers its state for the next commit of the instance."""
        result = commit_events(tenant, commit, self.before(tenant, commit, before), schema_base=self.schema_base)
        self.remember(tenant, commit.state)
        return result

    def page(self, tenant: str, commits: Sequence[Commit]) -> list[list[CloudEvent]]:
        """The CloudEvents of a page of commits (the pull feed, a sweep): a commit whose predecessor is in the
        page needs no lookup. Does not fill the cache, which stays for the live path."""
        states: dict[str, Instance] = {}
        result = []
        for commit in commits:
            known = states.get(commit.instance_id, _UNKNOWN)
            result.append(commit_events(tenant, commit, self.before(tenant, commit, known),
                                        schema_base=self.schema_base))
            states[commit.instance_id] = commit.state
        return result
