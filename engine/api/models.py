"""Request and response bodies of the API, with the examples the OpenAPI document shows.

pydantic lives here, at the edge: requests are validated into these models, then turned into the plain
commands and values of the service layer. Responses are built from the domain's `to_dict` shapes; the response
models exist to document them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from engine.domain import parse_duration, parse_time

__all__ = [
    "BroadcastAccepted", "BroadcastRequest", "CreateAccepted", "CreateInstanceRequest", "EventPage", "EventView",
    "FaultView", "Health", "InstancePage", "InstanceView", "ProblemDetails", "Readiness", "ScheduledList",
    "TenantCreated", "TenantRequest", "TenantView", "TimerView", "TriggerAccepted", "TriggerRequest",
    "TriggerResult", "WorkflowList", "WorkflowSummary", "WorkflowVersion",
]

MAX_JSON_DEPTH = 64
ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TRIGGER_ID = r"^[!-~]{1,200}$"  # visible ASCII: client-chosen idempotency keys (uuids, "order-42:paid", …)


def json_safe(value: Any) -> Any:
    """Reject what JSON parsers accept but storage and other clients cannot take: NaN and ±Infinity, strings
    with unpaired surrogates, and nesting deeper than MAX_JSON_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")
        if isinstance(item, str):
            _encodable(item)
        elif isinstance(item, dict):
            for key, sub in item.items():
                _encodable(key)
                stack.append((sub, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, depth + 1) for sub in item)
    return value


def _encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("strings must be valid Unicode (an unpaired surrogate was found)") from e


JsonObject = Annotated[dict[str, Any], AfterValidator(json_safe)]
JsonValue = Annotated[Any, AfterValidator(json_safe)]
Subject = Annotated[str, Field(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------------------------- requests

class TenantRequest(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "acme"}]})

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="2–63 lower-case letters, digits and '-'.")
    config: JsonObject = Field(default_factory=dict, description="Free-form tenant configuration.")


class CreateInstanceRequest(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"workflowId": "expense-claim", "id": "claim-42", "context": {"claimant": "J George"},
         "interests": ["claimant:jgeorge"]},
    ]})

    workflow_id: str = Field(alias="workflowId", pattern=ID, description="The workflow to instantiate (its latest "
                                                                          "version, pinned at acceptance).")
    id: str | None = Field(None, pattern=ID, description="Instance id; generated when absent.")
    context: JsonObject = Field(default_factory=dict, description="Initial context.")
    interests: list[Subject] = Field(default_factory=list, max_length=100,
                                     description="Subjects the instance listens to (broadcast triggers) while it "
                                                 "lives, beside its id and its state's `interests`.")
    trigger_id: str | None = Field(None, alias="triggerId", pattern=TRIGGER_ID,
                                   description="Idempotency key of the creation; generated when absent.")


def _rfc3339(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_time(value)
        except ValueError as e:
            raise ValueError(f"is not an RFC 3339 date-time with an offset (2026-12-01T09:00:00Z): {e}") from e
    return value


def _iso_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)  # its ValueError says what is wrong
    return value


class _Schedulable(_Body):
    not_before: Annotated[str | None, AfterValidator(_rfc3339)] = Field(
        None, alias="notBefore", max_length=64,
        description="Send the trigger at this time (RFC 3339), not before; `202` at once. Listed and cancellable "
                    "under `…/instances/{i}/scheduled` until then.")
    delay: Annotated[str | None, AfterValidator(_iso_duration)] = Field(
        None, max_length=64, description="Send the trigger after this ISO 8601 duration (`PT1H`, `P3D`); like "
                                         "`notBefore`.")

    @model_validator(mode="after")
    def _one_time(self) -> _Schedulable:
        if self.not_before is not None and self.delay is not None:
            raise ValueError("give `notBefore` or `delay`, not both")
        return self


class TriggerRequest(_Schedulable):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "submit-claim-42", "topic": "submit", "content": {"amount": 12.5}},
        {"id": "remind-claim-42", "topic": "remind", "notBefore": "2026-12-01T09:00:00Z"},
        {"topic": "chase", "delay": "PT1H"},
    ]})

    id: str | None = Field(None, pattern=TRIGGER_ID, description="Idempotency key: the same id sent again returns "
                                                                 "the first result and changes nothing.")
    topic: str = Field(min_length=1, max_length=200)
    content: JsonValue = None
    subjects: list[Subject] = Field(default_factory=list, max_length=100)
    expected_version: int | None = Field(
        None, alias="expectedVersion", ge=0, le=2**62, strict=True,
        description="Apply the trigger only while the instance is at this version (as `If-Match: \"<version>\"`); "
                    "otherwise it is recorded as `TriggerRejected` with reason `version-mismatch` (412 with "
                    "`Prefer: wait`).")


class BroadcastRequest(_Schedulable):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"topic": "update", "content": {"amount": 20}, "subjects": ["claimant:jgeorge"]},
    ]})

    id: str | None = Field(None, pattern=TRIGGER_ID)
    topic: str = Field(min_length=1, max_length=200)
    content: JsonValue = None
    subjects: list[Subject] = Field(min_length=1, max_length=100,
                                    description="Every instance interested in any of these gets the trigger.")


# ---------------------------------------------------------------------------------------------- responses

class _View(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class TenantCreated(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "acme", "key": "wmk_3q…"}]})

    id: str
    key: str = Field(description="The tenant key. Shown once: only its HMAC is stored.")


class TenantView(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "acme", "createdAt": "2025-01-01T12:00:00.000000Z", "config": {}}]})

    id: str
    created_at: str = Field(alias="createdAt")
    config: dict[str, Any]


class WorkflowSummary(_View):
    id: str
    version: int


class WorkflowList(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [{"id": "expense-claim", "version": 2}]}]})

    items: list[WorkflowSummary]


class WorkflowVersion(_View):
    """The definition document as uploaded, with the version it was stored as."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"id": "expense-claim", "version": 1, "initialState": "draft",
         "states": {"draft": {"transitions": [{"id": "submit", "trigger": "submit", "target": "done"}]},
                    "done": {}}}]})

    id: str
    version: int


class FaultView(_View):
    sequence: int
    trigger_id: str | None = Field(alias="triggerId")
    where: str
    error_type: str = Field(alias="errorType")
    message: str
    at: str | None = None


INSTANCE_EXAMPLE: dict[str, Any] = {
    "id": "claim-42", "workflowId": "expense-claim", "workflowVersion": 1, "state": "awaiting-approval",
    "status": "Waiting", "context": {"claimant": "J George", "amount": 12.5}, "interests": ["claimant:jgeorge"],
    "version": 3, "fault": None, "createdAt": "2025-01-01T12:00:00.000000Z",
    "updatedAt": "2025-01-01T12:05:00.000000Z",
}


class TimerView(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"timerId": "escalate", "kind": "timeout", "entrySequence": 3, "n": 1, "dueAt": "2026-12-01T09:00:00.000000Z",
         "state": "awaiting-approval", "trigger": {"id": "claim-42:3:escalate:1", "topic": "escalate",
                                                   "content": {"reason": "timeout"}},
         "scheduledAt": "2026-11-28T09:00:00.000000Z"}]})

    timer_id: str = Field(alias="timerId", description="The timeout's id, or the scheduled trigger's id.")
    kind: Literal["timeout", "trigger"]
    entry_sequence: int | None = Field(alias="entrySequence", description="The visit it belongs to (a timeout).")
    n: int = Field(description="Which firing of a repeating timeout (1 for the first).")
    due_at: str = Field(alias="dueAt")
    state: str | None = None
    trigger: dict[str, Any] = Field(description="What is sent when it fires: `id`, `topic`, `content`.")
    repeat: int | None = None
    scheduled_at: str | None = Field(None, alias="scheduledAt")
    by: str | None = None


class ScheduledList(_View):
    items: list[TimerView]


class InstanceView(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [INSTANCE_EXAMPLE]})

    id: str
    workflow_id: str = Field(alias="workflowId")
    workflow_version: int = Field(alias="workflowVersion")
    state: str
    status: Literal["Waiting", "Complete", "Faulted", "Terminated"]
    context: dict[str, Any]
    interests: list[str] = Field(description="The subjects broadcasts reach it by: its id, the interests given at "
                                             "creation and its state's `interests`; none once Complete or "
                                             "Terminated.")
    version: int = Field(description="Sequence number of the instance's last event; also its ETag.")
    fault: FaultView | None = None
    timers: list[TimerView] = Field(default_factory=list, description="Pending timers: the current state's "
                                                                      "timeouts and scheduled triggers.")
    entry_sequence: int = Field(0, alias="entrySequence", description="The event that began the current visit "
                                                                      "of `state` (its timers belong to it).")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    given_interests: list[str] = Field(default_factory=list, alias="givenInterests",
                                       description="The interests given when it was created (kept while it lives).")


class InstancePage(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [INSTANCE_EXAMPLE], "continuation": None}]})

    items: list[InstanceView]
    continuation: str | None = Field(description="Pass as `continuation` for the next page; null on the last.")


class EventView(_View):
    sequence: int
    type: str
    at: str
    trigger_id: str | None = Field(alias="triggerId")
    data: dict[str, Any]


class EventPage(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [
        {"sequence": 1, "type": "Created", "at": "2025-01-01T12:00:00.000000Z", "triggerId": "create-claim-42",
         "data": {"workflowId": "expense-claim", "workflowVersion": 1, "state": "draft",
                  "context": {"claimant": "J George"}, "interests": []}}], "continuation": None}]})

    items: list[EventView]
    continuation: str | None


class CreateAccepted(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"instanceId": "claim-42",
                                                               "triggerId": "create-claim-42"}]})

    instance_id: str = Field(alias="instanceId")
    trigger_id: str = Field(alias="triggerId")


class TriggerAccepted(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"triggerId": "submit-claim-42"}]})

    trigger_id: str = Field(alias="triggerId")


class TriggerResult(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"outcome": "applied", "instance": INSTANCE_EXAMPLE}]})

    outcome: Literal["created", "applied", "ignored", "rejected", "faulted", "recovered", "terminated"]
    instance: InstanceView = Field(description="The instance as that trigger left it.")


class BroadcastAccepted(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"triggerId": "7c9e…",
                                                               "subjects": ["claimant:jgeorge"]}]})

    trigger_id: str = Field(alias="triggerId")
    subjects: list[str]


class Health(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class Readiness(_View):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "checks": {"registry": {"status": "ok", "tenants": 1},
                                    "storage": {"status": "ok", "pinged": 1},
                                    "queue": {"status": "ok", "depth": 0, "poisoned": 0}}}]})

    status: Literal["ok"]
    checks: dict[str, dict[str, Any]] = Field(
        description="Each check by name: `status` (ok, unavailable, failed) and what it found; a 503 problem "
                    "carries the same `checks`")


class ProblemDetails(_View):
    """RFC 9457 problem details: every error response of the API."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"type": "urn:waymark:problem:instance-not-found", "title": "Instance not found", "status": 404,
         "detail": "instance 'claim-43' does not exist in tenant 'demo'",
         "instance": "/tenants/demo/instances/claim-43",
         "tenant": "demo", "instanceId": "claim-43"}]})

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = Field(None, description="Each problem of an invalid request or "
                                                                  "definition: {path, message}.")
