"""Through `waymark serve`: a hostile expression faults its instance with `ExpressionBudgetExceeded` (the budget a
setting), is refused at upload when it could never fit, and another tenant's triggers meanwhile apply."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RunningServer, serve_api

HIDDEN = "trigger.content.l.map//x\n(a, trigger.content.l.map//y\n(b, a + b)).size() >= 0"


def _workflow(expression: str) -> dict[str, Any]:
    return {"id": "hostile", "initialState": "a", "states": {"a": {"transitions": [
        {"id": "go", "trigger": "go", "target": "a",
         "conditions": [{"type": "expression", "expression": expression}]}]}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_api(Path(tmp_path_factory.mktemp("budget")), expression_max_steps=200_000) as running:
        yield running


def test_a_hidden_nested_macro_faults_with_the_budget_setting(server: RunningServer) -> None:
    key = server.onboard("hostile", samples=False)
    neighbour = server.onboard("neighbour")
    with server.client(key) as http:
        assert http.put("/tenants/hostile/workflows/hostile", json=_workflow(HIDDEN)).status_code in (200, 201)
        created = http.post("/tenants/hostile/instances", json={"workflowId": "hostile", "id": "h"},
                            headers={"Prefer": "wait=10"})
        assert created.status_code == 201, created.text
        small = http.post("/tenants/hostile/instances/h/triggers", json={"topic": "go", "content": {"l": [1, 2]}},
                          headers={"Prefer": "wait=10"})
        assert small.json()["outcome"] == "applied"
        big = http.post("/tenants/hostile/instances/h/triggers",
                        json={"topic": "go", "content": {"l": list(range(300))}}, headers={"Prefer": "wait=10"})
    result = big.json()
    assert result["outcome"] == "faulted", result
    fault = result["instance"]["fault"]
    assert fault["errorType"] == "ExpressionBudgetExceeded"
    assert fault["where"] == "$.states.a.transitions[0].conditions[0]"
    assert "more than the 200,000 an evaluation may take" in fault["message"]
    with server.client(neighbour) as http:
        response = http.post("/tenants/neighbour/instances", json={"workflowId": "expense-claim", "id": "n",
                                                                   "context": {"claimant": "J"}},
                             headers={"Prefer": "wait=10"})
        assert response.status_code == 201, response.text


def test_an_expression_over_the_budget_whatever_its_input_is_refused_at_upload(server: RunningServer) -> None:
    key = server.onboard("uploader", samples=False)
    doubling = "['x']" + ".map(a, a + a)" * 40 + "[0].size() > 0"
    deep = "trigger.content.l.all//\n(a, a.all(b, b.all(c, c.all(d, true))))"
    with server.client(key) as http:
        response = http.put("/tenants/uploader/workflows/hostile", json={
            "id": "hostile", "initialState": "a", "states": {"a": {"transitions": [
                {"id": "go", "trigger": "go", "target": "a", "conditions": [
                    {"type": "expression", "expression": doubling}, {"type": "expression", "expression": deep}]}]}}})
    assert response.status_code == 422, response.text
    detail = response.text
    assert "even over empty variables" in detail and "nest 4 deep" in detail
