"""The published contracts over real HTTP: the definition schema served and used by upload validation, the OpenAPI
document valid with every `$ref` resolved, `Allow` on every path, 415 documented where it is answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from tests.integration.conftest import SAMPLES, RunningServer

pytestmark = pytest.mark.integration


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
