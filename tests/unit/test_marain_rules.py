"""Marain.Workflow's rules the domain now follows: interests that follow the state (the instance id always one,
none once finished), and transitions without a trigger topic, taken when their conditions hold, in order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.domain import (
    EventType,
    HttpRequest,
    HttpResponse,
    Instance,
    Outcome,
    RecoveryMode,
    Services,
    Status,
    Trigger,
    decide_create,
    decide_recover,
    decide_terminate,
    decide_trigger,
    default_registry,
    fold,
    parse_definition,
)
from engine.domain.definition import WorkflowDefinition

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def workflow(states: dict[str, Any]) -> WorkflowDefinition:
    return parse_definition({"id": "w", "initialState": "a", "states": states}, default_registry(), version=1)


def create(definition: WorkflowDefinition, context: dict[str, Any] | None = None,
           given: tuple[str, ...] = ("batch:7",)) -> Instance:
    return decide_create(definition, "i-1", context=context or {}, interests=given, trigger_id="c", now=NOW,
                         services=Services()).instance


def send(instance: Instance, definition: WorkflowDefinition, topic: str, content: Any = None,
         trigger_id: str = "t") -> Any:
    return decide_trigger(instance, definition, Trigger(topic, trigger_id, content or {}), now=NOW,
                          services=Services())


REVIEW = workflow({
    "a": {"interests": ["drafts", {"expression": "'author:' + context.author"}],
          "transitions": [{"id": "submit", "trigger": "submit", "target": "b",
                           "actions": [{"type": "set-context", "values": {"reviewer": "trigger.content.reviewer"}}]}]},
    "b": {"interests": [{"expression": "['reviewer:' + context.reviewer, 'queue:' + instance.state]"},
                        {"expression": "has(context.escalated) ? 'escalations' : null"}],
          "transitions": [{"id": "escalate", "trigger": "escalate", "target": "b",
                           "actions": [{"type": "set-context", "values": {"escalated": "true"}}]},
                          {"id": "accept", "trigger": "accept", "target": "done"}]},
    "done": {"interests": ["never-listened"]},
})


def test_interests_follow_the_state_with_the_id_and_the_given_ones_always() -> None:
    instance = create(REVIEW, {"author": "ann"})
    assert instance.interests == ("author:ann", "batch:7", "drafts", "i-1")
    submitted = send(instance, REVIEW, "submit", {"reviewer": "bob"})
    assert submitted.instance.interests == ("batch:7", "i-1", "queue:b", "reviewer:bob")
    assert submitted.events[0].data["interests"] == ["batch:7", "i-1", "queue:b", "reviewer:bob"]
    escalated = send(submitted.instance, REVIEW, "escalate", trigger_id="t2")  # recomputed on a self-transition
    assert "escalations" in escalated.instance.interests
    assert fold(None, [*create_events(REVIEW, {"author": "ann"}), *submitted.events]).interests == \
        submitted.instance.interests  # the fold is the truth


def create_events(definition: WorkflowDefinition, context: dict[str, Any]) -> tuple[Any, ...]:
    return decide_create(definition, "i-1", context=context, interests=("batch:7",), trigger_id="c", now=NOW,
                         services=Services()).events


def test_an_unchanged_set_is_not_written_again() -> None:
    plain = workflow({"a": {"transitions": [{"id": "loop", "trigger": "loop", "target": "a"},
                                            {"id": "end", "trigger": "end", "target": "z"}]}, "z": {}})
    looped = send(create(plain), plain, "loop")
    assert "interests" not in looped.events[0].data
    assert looped.instance.interests == ("batch:7", "i-1")


def test_complete_and_terminated_instances_have_none() -> None:
    done = send(send(create(REVIEW, {"author": "ann"}), REVIEW, "submit", {"reviewer": "bob"}).instance, REVIEW,
                "accept", trigger_id="t3")
    assert done.instance.status is Status.COMPLETE and done.instance.interests == ()
    assert done.instance.given_interests == ("batch:7",)  # kept, should a forced recovery revive it
    ended = decide_terminate(create(REVIEW, {"author": "ann"}), by="op", reason="r", command_id="x", now=NOW)
    assert ended.instance.status is Status.TERMINATED and ended.instance.interests == ()


def test_an_interest_that_is_not_a_subject_or_fails_faults_the_instance() -> None:
    for expression, error_type in (("context.n", "TypeMismatch"), ("context.missing", "NoSuchField")):
        broken = workflow({"a": {"transitions": [{"id": "go", "trigger": "go", "target": "b"}]},
                           "b": {"interests": [{"expression": expression}],
                                 "transitions": [{"id": "back", "trigger": "back", "target": "a"}]}})
        decision = send(create(broken, {"n": 5}), broken, "go")
        assert decision.outcome is Outcome.FAULTED, expression
        assert decision.instance.fault is not None and decision.instance.fault.error_type == error_type
        assert decision.instance.fault.where.startswith("$.states.b.interests[0]")


def test_a_reset_recomputes_the_interests_of_the_state_it_moves_to() -> None:
    faulty = workflow({"a": {"transitions": [{"id": "go", "trigger": "go", "target": "b",
                                              "actions": [{"type": "set-context", "values": {"x": "1 / 0"}}]}]},
                       "b": {"interests": ["in-b"], "transitions": [{"id": "end", "trigger": "end", "target": "z"}]},
                       "z": {}})
    faulted = send(create(faulty), faulty, "go").instance
    assert faulted.status is Status.FAULTED and faulted.interests == ("batch:7", "i-1")  # a faulted one keeps them
    recovered = decide_recover(faulted, faulty, mode=RecoveryMode.RESET, by="op", reason="r", recovery_id="r1",
                               now=NOW, services=Services(), state="b")
    assert recovered.instance.interests == ("batch:7", "i-1", "in-b")


ANY_TOPIC = workflow({
    "a": {"transitions": [
        {"id": "specific", "trigger": "approve", "target": "approved",
         "conditions": [{"type": "expression",
                         "expression": "has(trigger.content.level) && trigger.content.level == 'manager'"}]},
        {"id": "big", "target": "review", "conditions": [{"type": "expression",
                                                         "expression": "has(trigger.content.amount) && "
                                                                       "trigger.content.amount > 100"}]},
        {"id": "approve-small", "trigger": "approve", "target": "approved"},
        {"id": "anything", "target": "a"},
    ]},
    "review": {}, "approved": {},
})


@pytest.mark.parametrize(("topic", "content", "taken"), [
    ("approve", {"level": "manager"}, "specific"),          # listed first, its conditions hold
    ("approve", {"amount": 500}, "big"),                     # no topic: its conditions hold, before approve-small
    ("approve", {"amount": 5}, "approve-small"),
    ("something-else", {"amount": 500}, "big"),              # answers any topic
    ("something-else", {}, "anything"),                      # no topic, no condition: takes whatever is left
])
def test_transitions_without_a_trigger_answer_any_topic_in_definition_order(topic: str, content: dict[str, Any],
                                                                             taken: str) -> None:
    decision = send(create(ANY_TOPIC), ANY_TOPIC, topic, content)
    assert decision.outcome is Outcome.APPLIED
    assert decision.events[0].type is EventType.TRANSITION_APPLIED and decision.events[0].data["transition"] == taken


def test_without_a_catch_all_an_unanswered_topic_is_ignored_with_the_reason() -> None:
    guarded = workflow({"a": {"transitions": [{"id": "big", "target": "b", "conditions": [
        {"type": "expression", "expression": "has(trigger.content.amount)"}]}]}, "b": {}})
    decision = send(create(guarded), guarded, "anything", {})
    assert decision.outcome is Outcome.IGNORED
    assert decision.reason == "no transition for topic 'anything' from state 'a' has all its conditions true"


class Answering:
    """An HTTP port that answers every request with one response (the httpx port is tested on a real server)."""

    def __init__(self, response: HttpResponse) -> None:
        self.response = response
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return self.response


def test_an_http_action_reads_a_marain_external_service_answer() -> None:
    definition = workflow({"a": {"transitions": [{"id": "pay", "trigger": "pay", "target": "b", "actions": [
        {"type": "http", "url": "https://pay.example/claims"}]}]}, "b": {}})
    port = Answering(HttpResponse(200, {"contentType": "application/vnd.marain.workflows.externalserviceresponse",
                                        "contextValuesToSetOrAdd": {"paymentId": "p-1"},
                                        "contextValuesToRemove": ["amount"]}))
    instance = decide_create(definition, "i-1", context={"amount": 3}, interests=(), trigger_id="c", now=NOW,
                             services=Services()).instance
    decision = decide_trigger(instance, definition, Trigger("pay", "t", {}), now=NOW, services=Services(http=port))
    assert decision.outcome is Outcome.APPLIED and decision.instance.context == {"paymentId": "p-1"}
