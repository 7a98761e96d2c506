"""Local CLI commands: validate and diagram a definition file; and every setting of `waymark serve` is documented."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from engine.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_validate_a_valid_sample() -> None:
    result = runner.invoke(app, ["workflows", "validate", str(ROOT / "samples" / "expense-claim.json")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "w", "initialState": "x", "states": {"a": {"transitions": [
        {"id": "t", "trigger": "go", "target": "nowhere", "conditions": [{"type": "expression", "expression": "("}]}]}}}))
    result = runner.invoke(app, ["workflows", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    assert {p["path"] for p in report["problems"]} == {
        "$.initialState", "$.states.a.transitions[0].target", "$.states.a.transitions[0].conditions[0].expression"}


def test_validate_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = runner.invoke(app, ["workflows", "validate", str(bad)])
    assert result.exit_code == 1
    assert "not JSON" in " ".join(result.output.split())


def test_diagram_prints_mermaid() -> None:
    result = runner.invoke(app, ["workflows", "diagram", str(ROOT / "samples" / "expense-claim.json")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("stateDiagram-v2\n")
    assert "awaiting_payment --> paid : pay" in result.output


def test_rich_markup_in_user_data_is_printed_as_text(capsys: object) -> None:
    from engine.cli import render

    event = {"sequence": 2, "type": "TriggerIgnored", "at": "t", "triggerId": "[/]",
             "data": {"topic": "[bold]x", "reason": "closing [/] tag"}}
    with render.console.capture() as captured:
        render.history_table([event])
        render.instance_panel({"id": "[/]", "workflowId": "w", "workflowVersion": 1, "state": "[red]s",
                               "status": "Faulted", "version": 2, "context": {"k": "[/]"}, "interests": [],
                               "fault": {"errorType": "E", "where": "[/]", "sequence": 2, "triggerId": "t",
                                         "message": "[/bold]"}})
    text = captured.get()
    assert "closing [/] tag" in text and "[bold]x" in text and "[/bold]" in text


def test_the_docs_describe_every_setting_of_serve() -> None:
    """The configuration reference of the documentation site is generated from each setting's `description`: a
    setting without one, or whose row lacks it, is an undocumented setting."""
    from engine.hosting.settings import Settings
    from tools.docs.config_reference import configuration_reference, env_names
    from tools.docs.markdown import cell

    page = configuration_reference(Settings, app, []).split("\n## The CLI")[0]  # the server's settings
    undescribed = [name for name, info in Settings.model_fields.items() if len((info.description or "").split()) < 3]
    assert undescribed == []
    rows = {line.split("`")[1]: line for line in page.splitlines() if line.startswith("| `WAYMARK_")}
    missing = [name for name, info in Settings.model_fields.items()
               if cell(info.description) not in rows.get(env_names(Settings, name)[0], "")]
    assert missing == []
