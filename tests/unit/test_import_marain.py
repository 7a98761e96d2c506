"""`waymark workflows import-marain`: three definitions in Marain.Workflow's JSON shape (samples/marain), one with
constructs that cannot be converted. Each converted definition is valid, and runs as the Marain one would when
triggers are sent as the conversion says (a hosted trigger's name is the topic, its parameters the content)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from engine.cli.main import app
from engine.domain import (
    HttpRequest,
    HttpResponse,
    Instance,
    Outcome,
    Services,
    Trigger,
    decide_create,
    decide_trigger,
    default_registry,
)
from engine.service.definitions import validate_definition
from engine.service.marain import convert_marain

ROOT = Path(__file__).resolve().parents[2]
MARAIN = ROOT / "samples" / "marain"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
runner = CliRunner()


def convert(name: str) -> Any:
    return convert_marain(json.loads((MARAIN / f"{name}.json").read_text()))


class Recording:
    """An HTTP port answering each request in turn (the httpx port is tested against a real server)."""

    def __init__(self, *answers: HttpResponse) -> None:
        self.answers = list(answers)
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return self.answers.pop(0)


def start(definition: Any, context: dict[str, Any], services: Services | None = None) -> Instance:
    return decide_create(definition, "claim-1", context=context, interests=(), trigger_id="c", now=NOW,
                         services=services or Services()).instance


def send(instance: Instance, definition: Any, topic: str, content: Any = None, services: Services | None = None,
         trigger_id: str = "t") -> Any:
    return decide_trigger(instance, definition, Trigger(topic, trigger_id, content), now=NOW,
                          services=services or Services())


def test_the_cli_converts_each_sample_and_lists_what_it_could_not(tmp_path: Path) -> None:
    for name, code in (("expense-claim", 0), ("entity-review", 0), ("custom-types", 3)):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["workflows", "import-marain", str(MARAIN / f"{name}.json"), "-o", str(out)])
        assert result.exit_code == code, result.output
        validate_definition(json.loads(out.read_text()), default_registry())  # what it wrote is a valid definition
        validated = runner.invoke(app, ["workflows", "validate", str(out)])
        assert validated.exit_code == 0, validated.output
    report = runner.invoke(app, ["workflows", "import-marain", str(MARAIN / "custom-types.json"), "--json"])
    assert report.exit_code == 3
    body = json.loads(report.stdout)
    assert body["complete"] is False and body["problems"] == []
    assert {item["path"] for item in body["unconverted"]} == {
        "$.workflowEventSubscriptions[0].msiAuthenticationResource",
        "$.states.applied.transitions[0].conditions[1]",
        "$.states.applied.transitions[0].actions[0].authenticateWithManagedServiceIdentity",
        "$.states.applied.transitions[0].actions[1]",
    }


def test_a_file_that_is_not_json_or_not_there() -> None:
    assert runner.invoke(app, ["workflows", "import-marain", str(ROOT / "README.md")]).exit_code == 1
    assert runner.invoke(app, ["workflows", "import-marain", str(ROOT / "nothing.json")]).exit_code == 2


def test_the_expense_claim_runs_as_in_marain() -> None:
    conversion = convert("expense-claim")
    assert conversion.complete and conversion.unconverted == []
    document = conversion.definition
    waiting = document["states"]["waiting-for-submission"]
    assert [t["trigger"] for t in waiting["transitions"]] == ["submit", "abandon"]  # trigger names are topics
    assert waiting["interests"] == ["submit", "abandon"]  # Marain's trigger-name conditions report their names
    assert document["eventSubscriptions"] == [{"endpoint": "https://claims-dashboard.example/events"}]
    definition = validate_definition(document, default_registry())
    logged: list[str] = []
    instance = start(definition, {"claimant": "J George"},
                     Services(log=lambda message, fields: logged.append(message)))
    assert logged == ["Claim for J George waiting to be submitted"]  # `{context.claimant}` substituted
    assert send(instance, definition, "submit", {"note": "no total"}).outcome is Outcome.IGNORED  # Existence
    submitted = send(instance, definition, "submit", {"total": "12.50"}).instance
    assert submitted.state == "waiting-for-approval"
    # Inequality: the exit condition holds only when the approver parameter is there and is not "self".
    assert send(submitted, definition, "approve", {"approver": "self"}).outcome is Outcome.IGNORED
    port = Recording(HttpResponse(200, {"contextValuesToSetOrAdd": {"paymentId": "p-9"}, "contextValuesToRemove": []}))
    approved = send(submitted, definition, "approve", {"approver": "K Boss"}, Services(http=port), "t2")
    assert approved.outcome is Outcome.APPLIED and approved.instance.state == "approved"
    assert approved.instance.context["paymentId"] == "p-9"  # Marain's answer shape is read
    [request] = port.requests
    assert (request.method, request.url) == ("POST", "https://payments.example/claims")
    body = request.json_body
    # Transition actions run before the instance enters the target (as in Marain): it is still in the source.
    assert body["workflowInstanceId"] == "claim-1"
    assert body["workflowInstanceCurrentStateId"] == "waiting-for-approval"
    assert body["invokedById"] == "pay" and body["trigger"]["topic"] == "approve"
    assert body["contextProperties"] == {"claimant": "J George", "total": None}  # missing keys are null


def test_entity_ids_interests_and_a_transition_without_a_trigger() -> None:
    conversion = convert("entity-review")
    definition = validate_definition(conversion.definition, default_registry())
    port = Recording(HttpResponse(200, True), HttpResponse(200, True))
    instance = start(definition, {"documentId": "doc-7"})
    assert instance.interests == ("claim-1", "doc-7")  # the entity id from the context is an interest
    # An entity-id trigger is {"topic": activity, "content": {"entityId": ...}}; another entity's does nothing.
    assert send(instance, definition, "send-for-review", {"entityId": "doc-8"}).outcome is Outcome.IGNORED
    reviewed = send(instance, definition, "send-for-review", {"entityId": "doc-7"}, Services(http=port)).instance
    assert reviewed.state == "in-review"
    assert port.requests[0].method == "GET" and port.requests[0].json_body is None  # the entry condition
    assert reviewed.interests == ("claim-1", "doc-7", "reviewers")
    # The transition without a trigger answers any topic whose parameters say so (Marain's rule).
    returned = send(reviewed, definition, "whatever-it-is-called", {"returned": "yes"}, trigger_id="t2")
    assert returned.outcome is Outcome.APPLIED and returned.instance.state == "drafting"


def test_an_unconvertible_condition_fails_closed_and_keeps_its_json() -> None:
    conversion = convert("custom-types")
    transition = conversion.definition["states"]["applied"]["transitions"][0]
    assert transition["conditions"][0]["expression"] == "false"
    kept = transition["metadata"]["marain"]["unconverted"]
    assert kept["conditions"][0]["minimumScore"] == 600
    assert kept["actions"][0]["template"] == "accepted"
    assert [a["type"] for a in transition["actions"]] == ["http"]  # the letter action is left out, listed
    definition = validate_definition(conversion.definition, default_registry())
    assert send(start(definition, {}), definition, "check", {}).outcome is Outcome.IGNORED


def test_marain_shapes_in_other_casings_and_as_lists() -> None:
    document = {"Id": "pascal case", "InitialStateId": "s1", "States": [
        {"Id": "s1", "Transitions": [{"Id": "go", "TargetStateId": "s2", "Conditions": [
            {"ContentType": "application/vnd.marain.workflows.hosted.triggernamecondition", "TriggerName": "go"}]}]},
        {"Id": "s2"}], "Colour": "blue"}
    conversion = convert_marain(document)
    assert conversion.definition["id"] == "pascal-case"
    assert conversion.definition["states"]["s1"]["transitions"][0]["trigger"] == "go"
    assert ("$.Colour", "a property Waymark has no place for") in conversion.unconverted
    assert any("became 'pascal-case'" in note for _, note in conversion.notes)
    validate_definition(conversion.definition, default_registry())
