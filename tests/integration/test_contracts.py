"""The published contracts over real HTTP: the definition schema served and used by upload validation, the OpenAPI
document valid with every `$ref` resolved, `Allow` on every path, 415 documented where it is answered; the event
schemas served where `dataschema` points, and the AsyncAPI document valid under the AsyncAPI 3.0.0 JSON Schema and
cross-checked against the engine's list of event types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from engine.feed.cloudevents import ALL_TYPES
from engine.schemas import event_schema, event_types
from tests.integration.conftest import SAMPLES, RunningServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key(api_server: RunningServer) -> str:
    return api_server.onboard("contracts")


@pytest.fixture
def http(api_server: RunningServer, key: str) -> Iterator[httpx.Client]:
    with api_server.client(key) as client:
        yield client


def test_the_definition_schema_is_served_without_a_key_and_is_json_schema(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        response = anonymous.get("/schemas/workflow-definition.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$id"] == f"{api_server.url}/schemas/workflow-definition.json"
    Draft202012Validator.check_schema(schema)
    for sample in sorted(SAMPLES.glob("*.json")):
        assert list(Draft202012Validator(schema).iter_errors(json.loads(sample.read_text()))) == []


def test_a_schema_id_never_repeats_the_query_it_was_read_with(api_server: RunningServer) -> None:
    """The answers are public and cached: a Functions key sent as `?code=` must not be written into them."""
    with api_server.client() as anonymous:
        for path in ("/schemas/workflow-definition.json", "/schemas/events/io.waymark.workflow.instance.created.json"):
            response = anonymous.get(path, params={"code": "host-key-123"})
            assert response.status_code == 200
            assert response.json()["$id"] == f"{api_server.url}{path}"
            assert "host-key-123" not in response.text


def test_a_typo_is_a_422_naming_every_problem_with_a_hint(http: httpx.Client) -> None:
    """The issue's own example: before, this was a 201 and every instance was Complete at once."""
    body = {"initialState": "a", "states": {"a": {"trasitions": [{"id": "t", "trigger": "go", "target": "a"}],
                                                  "displayname": "x"}}, "foo": 1}
    response = http.put("/tenants/contracts/workflows/w7", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {e["path"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {"$.foo", "$.states.a.trasitions", "$.states.a.displayname"}
    assert "did you mean `transitions`?" in errors["$.states.a.trasitions"]
    assert "did you mean `displayName`?" in errors["$.states.a.displayname"]
    assert "`metadata`" in errors["$.foo"]
    assert http.get("/tenants/contracts/workflows/w7").status_code == 404  # nothing was stored


def test_metadata_is_stored_and_returned(http: httpx.Client) -> None:
    body = {"initialState": "a", "metadata": {"owner": "finance"}, "states": {"a": {"metadata": {"x": [1]}}}}
    assert http.put("/tenants/contracts/workflows/with-metadata", json=body).status_code == 201
    got = http.get("/tenants/contracts/workflows/with-metadata").json()
    assert got["metadata"] == {"owner": "finance"} and got["states"]["a"]["metadata"] == {"x": [1]}


def test_a_definition_not_sent_as_json_is_415(http: httpx.Client) -> None:
    sample = (SAMPLES / "expense-claim.json").read_bytes()
    response = http.put("/tenants/contracts/workflows/x", content=sample, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")


def test_openapi_is_valid_and_every_ref_resolves(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
    validate_openapi(document)  # openapi-spec-validator: the OpenAPI 3.1 document as a whole
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert "#/components/schemas/Filter" in refs and "#/components/schemas/WorkflowDefinition" in refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def test_every_operation_with_a_json_body_documents_415(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
    missing = [f"{method.upper()} {path}" for path, operations in document["paths"].items()
               for method, operation in operations.items()
               if "application/json" in operation.get("requestBody", {}).get("content", {})
               and "415" not in operation["responses"]]
    assert missing == []


def test_put_workflow_body_is_the_published_schema(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
        published = anonymous.get("/schemas/workflow-definition.json").json()
    body = document["paths"]["/tenants/{tenant}/workflows/{workflow_id}"]["put"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/WorkflowDefinition"}
    embedded = document["components"]["schemas"]
    assert set(embedded["WorkflowDefinition"]["properties"]) == set(published["properties"])
    assert {f"WorkflowDefinition.{name}" for name in published["$defs"]} <= set(embedded)


@pytest.mark.parametrize(("path", "allowed"), [
    ("/tenants/contracts/subscriptions/audit", {"GET", "PUT", "DELETE"}),
    ("/tenants/contracts/workflows/expense-claim", {"GET", "PUT"}),
    ("/tenants/contracts/instances", {"GET", "POST"}),
])
def test_options_and_405_name_every_method_of_the_path(http: httpx.Client, path: str, allowed: set[str]) -> None:
    response = http.options(path)
    assert response.status_code == 204, response.text
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed | {"OPTIONS"} <= listed
    refused = http.request("PATCH", path)
    assert refused.status_code == 405
    assert {m.strip() for m in refused.headers["allow"].split(",")} == listed
    assert refused.headers["content-type"].startswith("application/problem+json")


ASYNCAPI_SPEC = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def test_asyncapi_is_served_valid_and_names_every_event_type(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        response = anonymous.get("/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    # The AsyncAPI 3.0.0 JSON Schema, as the AsyncAPI project publishes it (npm @asyncapi/specs).
    spec = json.loads(ASYNCAPI_SPEC.read_text())
    validator = Draft7Validator(spec)
    assert [e.message for e in validator.iter_errors(document)] == []
    broken = json.loads(json.dumps(document))
    broken["operations"]["deliverToWebhook"]["action"] = "publish"  # AsyncAPI 2's word: not valid in 3.0
    assert not validator.is_valid(broken)
    for ref in refs_in(document):
        resolve(document, ref)
    # Cross-checked with the engine's own list of types: one message and one schema each, and nothing else.
    messages = document["channels"]["webhook"]["messages"]
    typed = {resolve(document, m["$ref"])["payload"]["properties"]["type"]["const"] for m in messages.values()}
    assert typed == set(ALL_TYPES) == set(event_types())
    schemas = document["components"]["schemas"]
    for event_type in ALL_TYPES:
        assert schemas[event_type] == {k: v for k, v in event_schema(event_type).items() if k != "$schema"}
    assert document["operations"]["validateWebhook"]["bindings"]["http"]["method"] == "OPTIONS"
    cloud_event = schemas["CloudEvent"]
    assert {"sequence", "tenantid", "dataschema"} <= set(cloud_event["required"])
    assert "X-Waymark-Signature" in schemas["WebhookHeaders"]["properties"]


def test_the_repository_copy_of_asyncapi_resolves_its_files() -> None:
    document = json.loads((ROOT / "engine" / "schemas" / "asyncapi.json").read_text())
    assert Draft7Validator(json.loads(ASYNCAPI_SPEC.read_text())).is_valid(document)
    for ref in refs_in(document):
        if ref.startswith("#/"):
            resolve(document, ref)
        else:
            assert (ROOT / "engine" / "schemas" / ref).is_file(), ref


@pytest.mark.parametrize("event_type", sorted(ALL_TYPES))
def test_each_event_schema_is_served_where_dataschema_points(api_server: RunningServer, event_type: str) -> None:
    with api_server.client() as anonymous:
        response = anonymous.get(f"/schemas/events/{event_type}.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/schema+json")
    served = response.json()
    assert served.pop("$id") == f"{api_server.url}/schemas/events/{event_type}.json"
    assert served == event_schema(event_type)


def test_an_unknown_event_type_is_a_404_problem(api_server: RunningServer) -> None:
    with api_server.client() as anonymous:
        response = anonymous.get("/schemas/events/io.waymark.nothing.json")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_events_from_a_live_server_name_its_schemas(api_server: RunningServer, http: httpx.Client) -> None:
    created = http.post("/tenants/contracts/instances", headers={"Prefer": "wait=10"},
                        json={"workflowId": "expense-claim", "id": "named", "context": {"claimant": "x"}})
    assert created.status_code == 201, created.text
    page = http.get("/tenants/contracts/feed", params={"after": 0})
    [event] = [e for e in page.json() if e["subject"] == "named"]
    expected_base = api_server.service.settings.schema_base
    assert event["dataschema"] == f"{expected_base}/schemas/events/{event['type']}.json"
    with api_server.client() as anonymous:
        schema = anonymous.get(urlsplit(event["dataschema"]).path).json()
    assert list(Draft202012Validator(schema).iter_errors(event["data"])) == []


def test_definitions_have_an_etag_and_a_stale_if_match_is_412(http: httpx.Client) -> None:
    sample = {k: v for k, v in json.loads((SAMPLES / "expense-claim.json").read_text()).items() if k != "id"}
    path = "/tenants/contracts/workflows/edited"
    created = http.put(path, json=sample, headers={"If-None-Match": "*"})
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    assert http.put(path, json=sample, headers={"If-None-Match": "*"}).status_code == 412  # exists now
    read = http.get(path)
    assert read.headers["etag"] == '"1"'
    assert http.get(path, headers={"If-None-Match": '"1"'}).status_code == 304
    # Two editors read version 1; the first to save wins, the second is told, and nothing of its is stored.
    first = http.put(path, json={**sample, "displayName": "first"}, headers={"If-Match": read.headers["etag"]})
    assert first.status_code == 200 and first.headers["etag"] == '"2"'
    second = http.put(path, json={**sample, "displayName": "second"}, headers={"If-Match": read.headers["etag"]})
    assert second.status_code == 412
    assert second.headers["content-type"].startswith("application/problem+json")
    assert second.headers["etag"] == '"2"' and second.json()["version"] == 2
    assert http.get(path).json()["displayName"] == "first"
    # The second editor reads the latest and saves on it.
    merged = http.put(path, json={**sample, "displayName": "second"}, headers={"If-Match": '"2"'})
    assert merged.status_code == 200 and merged.headers["etag"] == '"3"'
    assert http.get(f"{path}?version=2").headers["etag"] == '"2"'
    assert http.put("/tenants/contracts/workflows/nothing-yet", json=sample,
                    headers={"If-Match": "*"}).status_code == 412
    for bad in ('W/"3"', "3", '"x"'):
        refused = http.put(path, json=sample, headers={"If-Match": bad})
        assert refused.status_code == 400, bad
    assert http.get(path).json()["version"] == 3  # no refused upload stored anything
