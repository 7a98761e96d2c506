"""Every CloudEvent the test suite emits is checked against the published contract (engine/schemas/events/).

`tests/conftest.py` puts `CheckedCloudEvent` in place of the class `engine.feed.cloudevents` builds its events
with, for the whole session, so each event the mapper makes (for webhooks, Event Grid, the pull feed, the
dashboard) is validated as it is built: its `data` against the JSON Schema of its type, and the envelope
(`dataschema` naming that schema, `id` = `{subject}:{sequence}`, the `sequence` and `tenantid` extensions). A
violation fails the test during which it happened (an autouse fixture), wherever the event was built (a
dispatcher thread included).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from jsonschema import Draft202012Validator

from engine.schemas import EVENT_SCHEMA_PATH, event_schema, event_types


@dataclass
class EventContract:
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def validator(self, event_type: str) -> Draft202012Validator | None:
        if event_type not in event_types():
            return None
        with self._lock:
            found = self._validators.get(event_type)
            if found is None:
                found = self._validators[event_type] = Draft202012Validator(event_schema(event_type))
            return found

    def problems(self, event: Any) -> list[str]:
        attributes = event.get_attributes()
        event_type = str(attributes.get("type"))
        validator = self.validator(event_type)
        if validator is None:
            return [f"type {event_type!r} has no published schema"]
        found = [f"data{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
                 for e in validator.iter_errors(event.get_data())]
        if not str(attributes.get("dataschema", "")).endswith(EVENT_SCHEMA_PATH.format(type=event_type)):
            found.append(f"dataschema {attributes.get('dataschema')!r} does not name the schema of {event_type}")
        sequence = attributes.get("sequence")
        if not isinstance(sequence, int) or sequence < 1:
            found.append(f"extension sequence {sequence!r} is not a positive integer")
        if attributes.get("id") != f"{attributes.get('subject')}:{sequence}":
            found.append(f"id {attributes.get('id')!r} is not {{subject}}:{{sequence}}")
        if not isinstance(attributes.get("tenantid"), str) or not attributes["tenantid"]:
            found.append("extension tenantid is missing")
        if attributes.get("datacontenttype") != "application/json":
            found.append(f"datacontenttype is {attributes.get('datacontenttype')!r}")
        return found

    def check(self, event: Any) -> None:
        problems = self.problems(event)
        with self._lock:
            self.checked += 1
            if problems:
                self.violations.append(f"{event.get_type()} {event.get_id()}: " + "; ".join(problems))

    def take_violations(self) -> list[str]:
        with self._lock:
            found, self.violations = self.violations, []
            return found


CONTRACT = EventContract()


class CheckedCloudEvent(CloudEvent):
    """The SDK's CloudEvent, checked against the contract as it is built."""

    def __init__(self, attributes: dict[str, Any], data: Any = None) -> None:
        super().__init__(attributes, data)
        CONTRACT.check(self)
