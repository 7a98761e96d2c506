"""The instance aggregate's semantics (Marain.Workflow's), one test each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.domain import (
    VERSION_MISMATCH,
    EventType,
    HttpRequest,
    HttpResponse,
    HttpTransportError,
    Instance,
    Outcome,
    Services,
    Status,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
    fold,
    is_version_mismatch,
    parse_definition,
)
from engine.domain.definition import WorkflowDefinition

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def workflow(states: dict[str, Any], initial: str = "a") -> WorkflowDefinition:
    return parse_definition({"id": "w", "initialState": initial, "states": states}, default_registry(), version=1)


def create(definition: WorkflowDefinition, context: dict[str, Any] | None = None,
           services: Services | None = None) -> Instance:
    decision = decide_create(definition, "i-1", context=context or {}, interests=["s"], trigger_id="create",
                             now=NOW, services=services or Services())
    return decision.instance


def send(instance: Instance, definition: WorkflowDefinition, topic: str, content: Any = None,
         services: Services | None = None, trigger_id: str = "t") -> Any:
    return decide_trigger(instance, definition, Trigger(topic, trigger_id, content if content is not None else {}),
                          now=NOW, services=services or Services())


class FakeHttp:
    """A scripted HTTP port for unit tests of the domain (the httpx port is tested against a real server)."""

    def __init__(self, *answers: HttpResponse | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def services_with(http: FakeHttp, slept: list[float] | None = None) -> Services:
    sleep: Callable[[float], None] = (slept.append if slept is not None else (lambda s: None))
    return Services(http=http, sleep=sleep)


def test_creation_runs_entry_actions_and_records_created() -> None:
    definition = workflow({"a": {"entryActions": [{"type": "set-context", "values": {"n": "1"}}],
                                 "transitions": [{"id": "t", "trigger": "go", "target": "a"}]}})
    decision = decide_create(definition, "i-1", context={"x": 2}, interests=["b", "a", "a"], trigger_id="c",
                             now=NOW, services=Services())
    assert decision.outcome is Outcome.CREATED
    assert [e.type for e in decision.events] == [EventType.CREATED]
    assert decision.events[0].sequence == 1 and decision.events[0].trigger_id == "c"
    assert decision.instance.context == {"x": 2, "n": 1}
    assert decision.instance.interests == ("a", "b", "i-1")  # the given ones and, always, its own id
    assert decision.instance.given_interests == ("a", "b")
    assert decision.instance.status is Status.WAITING and decision.instance.version == 1


def test_creation_faults_when_the_initial_entry_condition_is_false() -> None:
    definition = workflow({"a": {"entryConditions": [{"type": "expression", "expression": "has(context.who)"}]}})
    decision = decide_create(definition, "i-1", context={}, interests=[], trigger_id="c", now=NOW,
                             services=Services())
    assert decision.outcome is Outcome.FAULTED
    assert [e.type for e in decision.events] == [EventType.CREATED, EventType.FAULTED]
    assert decision.instance.status is Status.FAULTED
    assert decision.instance.fault is not None
    assert decision.instance.fault.where == "$.states.a.entryConditions[0]"
    assert decision.instance.fault.error_type == "EntryConditionFailed"


def test_a_terminal_initial_state_completes_at_creation() -> None:
    decision = decide_create(workflow({"a": {}}), "i", context={}, interests=[], trigger_id="c", now=NOW,
                             services=Services())
    assert [e.type for e in decision.events] == [EventType.CREATED, EventType.COMPLETED]
    assert decision.instance.status is Status.COMPLETE


def test_first_matching_transition_in_definition_order_wins() -> None:
    definition = workflow({"a": {"transitions": [
        {"id": "small", "trigger": "go", "target": "b",
         "conditions": [{"type": "expression", "expression": "trigger.content.n < 10"}]},
        {"id": "any", "trigger": "go", "target": "c"},
        {"id": "also", "trigger": "go", "target": "b"},
    ]}, "b": {"transitions": [{"id": "back", "trigger": "x", "target": "a"}]}, "c": {}})
    instance = create(definition)
    assert send(instance, definition, "go", {"n": 3}).instance.state == "b"
    decision = send(instance, definition, "go", {"n": 30})
    assert decision.instance.state == "c"
    assert decision.events[0].data["transition"] == "any"


def test_unknown_topic_is_ignored_with_a_reason_and_nothing_else_changes() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a"}]}})
    instance = create(definition, {"k": 1})
    decision = send(instance, definition, "dance")
    assert decision.outcome is Outcome.IGNORED
    assert decision.events[0].type is EventType.TRIGGER_IGNORED
    assert "has no transition for topic 'dance'" in decision.events[0].data["reason"]
    assert decision.instance.state == "a" and decision.instance.context == {"k": 1}
    assert decision.instance.version == instance.version + 1


def test_a_trigger_with_an_expected_version_applies_only_at_that_version() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a"}]}})
    instance = create(definition, {"k": 1})
    at = decide_trigger(instance, definition, Trigger("go", "t1", {}, expected_version=instance.version), now=NOW,
                        services=Services())
    assert at.outcome is Outcome.APPLIED
    stale = decide_trigger(at.instance, definition, Trigger("go", "t2", {}, expected_version=instance.version),
                           now=NOW, services=Services())
    assert stale.outcome is Outcome.REJECTED
    [event] = stale.events
    assert event.type is EventType.TRIGGER_REJECTED and is_version_mismatch(stale.events)
    assert event.data["reason"] == VERSION_MISMATCH == "version-mismatch"
    assert (event.data["expectedVersion"], event.data["version"]) == (instance.version, at.instance.version)
    assert "expected the instance at version 1; it is at version 2" in event.data["detail"]
    assert stale.instance.state == "a" and stale.instance.version == at.instance.version + 1


def test_false_exit_condition_ignores_the_trigger() -> None:
    definition = workflow({"a": {"exitConditions": [{"type": "expression", "expression": "context.open"}],
                                 "transitions": [{"id": "t", "trigger": "go", "target": "b"}]}, "b": {}})
    decision = send(create(definition, {"open": False}), definition, "go")
    assert decision.outcome is Outcome.IGNORED
    assert "exit condition" in decision.reason
    assert send(create(definition, {"open": True}), definition, "go").outcome is Outcome.APPLIED


def test_false_entry_condition_of_the_target_ignores_the_trigger() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "b"}]},
                           "b": {"entryConditions": [{"type": "expression", "expression": "trigger.content.ok"}]}})
    instance = create(definition)
    decision = send(instance, definition, "go", {"ok": False})
    assert decision.outcome is Outcome.IGNORED and "entry condition" in decision.reason
    assert send(instance, definition, "go", {"ok": True}).instance.state == "b"


def test_actions_run_exit_then_transition_then_entry_and_see_each_others_changes() -> None:
    definition = workflow({
        "a": {"exitActions": [{"type": "set-context", "values": {"log": "'exit'"}}],
              "transitions": [{"id": "t", "trigger": "go", "target": "b",
                               "actions": [{"type": "set-context", "values": {"log": "context.log + ',move'"}}]}]},
        "b": {"entryActions": [{"type": "set-context", "values": {"log": "context.log + ',entry:' + instance.state"}}],
              "transitions": [{"id": "u", "trigger": "x", "target": "a"}]},
    })
    decision = send(create(definition), definition, "go")
    assert decision.instance.context["log"] == "exit,move,entry:b"
    assert decision.events[0].data["contextChanges"] == {"set": {"log": "exit,move,entry:b"}, "removed": []}


def test_self_transition_runs_exit_and_entry_actions() -> None:
    definition = workflow({"a": {
        "entryActions": [{"type": "set-context", "values": {"entries": "has(context.entries) ? context.entries + 1 : 1"}}],
        "exitActions": [{"type": "set-context", "values": {"exits": "has(context.exits) ? context.exits + 1 : 1"}}],
        "transitions": [{"id": "again", "trigger": "again", "target": "a"}]}})
    instance = create(definition)
    assert instance.context == {"entries": 1}
    after = send(instance, definition, "again").instance
    assert after.context == {"entries": 2, "exits": 1}
    assert after.state == "a"


def test_set_context_can_remove_keys() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a",
                                                  "actions": [{"type": "set-context", "remove": ["secret"]}]}]}})
    decision = send(create(definition, {"secret": 1, "keep": 2}), definition, "go")
    assert decision.instance.context == {"keep": 2}
    assert decision.events[0].data["contextChanges"] == {"set": {}, "removed": ["secret"]}


def test_reaching_a_state_without_transitions_completes_the_instance() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "end"}]}, "end": {}})
    decision = send(create(definition), definition, "go")
    assert [e.type for e in decision.events] == [EventType.TRANSITION_APPLIED, EventType.COMPLETED]
    assert [e.sequence for e in decision.events] == [2, 3]
    assert decision.instance.status is Status.COMPLETE


@pytest.mark.parametrize("status", [Status.COMPLETE, Status.FAULTED, Status.TERMINATED])
def test_finished_or_faulted_instances_reject_triggers(status: Status) -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a"}]}})
    from dataclasses import replace
    instance = replace(create(definition), status=status)
    decision = send(instance, definition, "go")
    assert decision.outcome is Outcome.REJECTED
    assert decision.events[0].type is EventType.TRIGGER_REJECTED
    assert decision.events[0].data["status"] == str(status)
    assert decision.instance.status is status


def test_an_expression_error_at_run_time_faults_with_where_and_type() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a",
                                                  "actions": [{"type": "set-context", "values": {"r": "1 / context.zero"}}]}]}})
    instance = create(definition, {"zero": 0, "k": "v"})
    decision = send(instance, definition, "go")
    assert decision.outcome is Outcome.FAULTED
    event = decision.events[0]
    assert event.type is EventType.FAULTED
    assert event.data["where"] == "$.states.a.transitions[0].actions[0].values.r"
    assert event.data["errorType"] == "DivisionByZero"
    assert event.data["trigger"] == {"id": "t", "topic": "go", "content": {}}
    assert decision.instance.state == "a" and decision.instance.context == {"zero": 0, "k": "v"}
    assert decision.instance.fault is not None and decision.instance.fault.sequence == 2


def test_a_missing_field_in_a_condition_faults() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a",
                                                  "conditions": [{"type": "expression", "expression": "context.nope > 1"}]}]}})
    decision = send(create(definition), definition, "go")
    assert decision.outcome is Outcome.FAULTED
    assert decision.instance.fault is not None
    assert decision.instance.fault.error_type == "NoSuchField"
    assert decision.instance.fault.where == "$.states.a.transitions[0].conditions[0]"


def test_a_condition_that_is_not_boolean_faults() -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a",
                                                  "conditions": [{"type": "expression", "expression": "42"}]}]}})
    decision = send(create(definition), definition, "go")
    assert decision.outcome is Outcome.FAULTED
    assert decision.instance.fault is not None and decision.instance.fault.error_type == "TypeMismatch"


def test_a_buggy_custom_action_faults_instead_of_crashing() -> None:
    class Broken:
        def __init__(self, spec: Any) -> None:
            pass

        def run(self, scope: Any, where: str) -> Any:
            raise RuntimeError("boom")

    registry = default_registry().copy()
    registry.action("broken", Broken)
    definition = parse_definition({"id": "w", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "a", "actions": [{"type": "broken"}]}]}}}, registry, version=1)
    decision = send(create(definition), definition, "go")
    assert decision.outcome is Outcome.FAULTED
    assert decision.instance.fault is not None
    assert (decision.instance.fault.error_type, decision.instance.fault.message) == ("RuntimeError", "boom")


HTTP_WORKFLOW = {"a": {"transitions": [{"id": "pay", "trigger": "pay", "target": "b", "actions": [
    {"type": "http", "method": "POST", "url": "https://pay.example/claims", "headers": {"X-Team": "finance"},
     "body": "{'claim': instance.id, 'amount': context.amount}", "retries": 2, "backoffSeconds": 0.5}]}]},
    "b": {"transitions": [{"id": "back", "trigger": "back", "target": "a"}]}}


def test_http_action_sends_body_and_idempotency_key_and_applies_the_answer() -> None:
    definition = workflow(HTTP_WORKFLOW)
    http = FakeHttp(HttpResponse(200, {"setContext": {"paymentId": "p-1"}, "removeContext": ["amount"]}))
    instance = create(definition, {"amount": 12})
    decision = send(instance, definition, "pay", services=services_with(http))
    assert decision.outcome is Outcome.APPLIED
    assert decision.instance.context == {"paymentId": "p-1"}
    request = http.requests[0]
    assert (request.method, request.url) == ("POST", "https://pay.example/claims")
    assert request.json_body == {"claim": "i-1", "amount": 12}
    assert request.headers["Idempotency-Key"] == f"i-1:{instance.version + 1}"
    assert request.headers["X-Team"] == "finance"


def test_http_action_retries_with_exponential_backoff_then_succeeds() -> None:
    definition = workflow(HTTP_WORKFLOW)
    slept: list[float] = []
    http = FakeHttp(HttpTransportError("refused"), HttpResponse(503, None), HttpResponse(204, None))
    decision = send(create(definition, {"amount": 1}), definition, "pay", services=services_with(http, slept))
    assert decision.outcome is Outcome.APPLIED
    assert slept == [0.5, 1.0]
    assert len({r.headers["Idempotency-Key"] for r in http.requests}) == 1


def test_http_action_that_keeps_failing_faults() -> None:
    definition = workflow(HTTP_WORKFLOW)
    http = FakeHttp(HttpResponse(500, None), HttpResponse(500, None), HttpResponse(500, None))
    decision = send(create(definition, {"amount": 1}), definition, "pay", services=services_with(http))
    assert decision.outcome is Outcome.FAULTED
    assert decision.instance.fault is not None
    assert decision.instance.fault.error_type == "HttpError"
    assert "answered 500" in decision.instance.fault.message
    assert len(http.requests) == 3


def test_http_action_transport_error_faults_after_retries() -> None:
    definition = workflow(HTTP_WORKFLOW)
    http = FakeHttp(*(HttpTransportError("timed out") for _ in range(3)))
    decision = send(create(definition, {"amount": 1}), definition, "pay", services=services_with(http))
    assert decision.instance.fault is not None
    assert decision.instance.fault.error_type == "HttpTransportError"


def test_http_action_with_no_http_port_configured_faults() -> None:
    definition = workflow(HTTP_WORKFLOW)
    decision = send(create(definition, {"amount": 1}), definition, "pay",
                    services=Services(sleep=lambda s: None))
    assert decision.outcome is Outcome.FAULTED


@pytest.mark.parametrize(("answer", "expected"), [
    (HttpResponse(200, True), Outcome.APPLIED),
    (HttpResponse(200, False), Outcome.IGNORED),
    (HttpResponse(200, {"ok": True}), Outcome.IGNORED),
    (HttpResponse(403, None), Outcome.IGNORED),
    (HttpResponse(500, None), Outcome.FAULTED),
])
def test_http_condition_is_true_only_on_2xx_with_body_true(answer: HttpResponse, expected: Outcome) -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a", "conditions": [
        {"type": "http", "url": "https://rules.example/check", "retries": 0}]}]}})
    decision = send(create(definition), definition, "go", services=services_with(FakeHttp(answer)))
    assert decision.outcome is expected


def test_log_action_goes_to_the_services_log() -> None:
    lines: list[tuple[str, Any]] = []
    definition = workflow({"a": {"entryActions": [{"type": "log", "message": "'hello ' + instance.id"}]}})
    create(definition, services=Services(log=lambda message, fields: lines.append((message, fields))))
    assert lines == [("hello i-1", {"instanceId": "i-1", "where": "$.states.a.entryActions[0]"})]


def test_the_instance_after_a_decision_is_the_fold_of_its_events(expense_claim: dict[str, Any]) -> None:
    definition = parse_definition(expense_claim, default_registry(), version=1)
    created = decide_create(definition, "c", context={"claimant": "ann"}, interests=[], trigger_id="0", now=NOW,
                            services=Services())
    events = list(created.events)
    instance = created.instance
    for n, (topic, content) in enumerate([("update", {"amount": 5}), ("submit", {}), ("approve", {"approver": "bob"}),
                                          ("pay", {"paidAt": "today"})]):
        decision = send(instance, definition, topic, content, trigger_id=str(n))
        events.extend(decision.events)
        instance = decision.instance
    assert instance.status is Status.COMPLETE and instance.state == "paid"
    assert fold(None, events) == instance
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))


def test_instance_round_trips_through_its_json_shape(expense_claim: dict[str, Any]) -> None:
    definition = workflow({"a": {"transitions": [{"id": "t", "trigger": "go", "target": "a",
                                                  "actions": [{"type": "set-context", "values": {"r": "1/0"}}]}]}})
    faulted = send(create(definition), definition, "go").instance
    assert Instance.from_dict(faulted.to_dict()) == faulted
    assert set(faulted.to_dict()) >= {"id", "workflowId", "workflowVersion", "state", "status", "context",
                                      "interests", "version", "fault"}
