"""infra/: the Bicep templates parse, their parameter files match them, and main.bicep sets exactly the app
settings engine/hosting/azure_settings.py declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.hosting.azure_settings import FUNCTIONS_HOST_SETTINGS, SETTINGS
from tests.infra.bicep_source import (
    app_setting_names,
    bicepparam_values,
    outputs,
    parse,
    problems,
    properties,
    resources,
    string_value,
    template_params,
    using_target,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.glob("*.bicep")) + sorted(INFRA.glob("*.bicepparam"))


def test_the_templates_and_parameter_files_are_there() -> None:
    names = {path.name for path in BICEP_FILES}
    assert {"main.bicep", "tenant.bicep", "main.bicepparam", "tenant.bicepparam"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: path.name)
def test_bicep_parses_without_errors(path: Path) -> None:
    tree = parse(path)
    found = problems(tree)
    assert found == [], f"{path.name}: " + "; ".join(str(problem) for problem in found)
    assert not tree.root_node.has_error


def test_the_syntax_check_does_catch_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param name string\nresource s 'Microsoft.Web/sites@2024-04-01' = {\n  name: name\n")
    assert problems(parse(broken))
    broken_values = tmp_path / "broken.bicepparam"
    broken_values.write_text("using './main.bicep'\nparam location = 'westeurope\nparam tags = {\n")
    assert problems(parse(broken_values))


@pytest.mark.parametrize("path", sorted(INFRA.glob("*.bicepparam")), ids=lambda path: path.name)
def test_a_parameter_file_sets_only_and_all_required_parameters_of_its_template(path: Path) -> None:
    values = parse(path)
    target = using_target(values)
    assert target is not None, f"{path.name} has no `using` statement"
    template = (path.parent / target).resolve()
    assert template.exists(), f"{path.name} uses {target}, which does not exist"
    params = template_params(parse(template))
    set_here = bicepparam_values(values)

    assert len(set_here) == len(set(set_here)), f"{path.name} sets a parameter twice"
    assert sorted(set(set_here) - set(params)) == [], f"{path.name} sets parameters {template.name} does not have"
    required = {name for name, param in params.items() if not param.has_default}
    assert sorted(required - set(set_here)) == [], f"{path.name} misses required parameters of {template.name}"


def test_main_bicep_sets_exactly_the_app_settings_the_code_reads() -> None:
    in_bicep = app_setting_names(parse(INFRA / "main.bicep"))
    assert len(in_bicep) == len(set(in_bicep)), "main.bicep sets an app setting twice"

    deployed = {setting.name for setting in SETTINGS if setting.deployed}
    alternatives = {setting.name for setting in SETTINGS if not setting.deployed}
    ours_in_bicep = set(in_bicep) - FUNCTIONS_HOST_SETTINGS

    assert sorted(deployed - ours_in_bicep) == [], "declared in engine/hosting/azure_settings.py, not set by main.bicep"
    assert sorted(ours_in_bicep - deployed - alternatives) == [], "set by main.bicep, unknown to azure_settings"
    assert sorted(ours_in_bicep & alternatives) == [], "main.bicep deploys identity-based: no key settings"
    # The host's storage is identity-based too.
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential"} <= set(in_bicep)
    assert "AzureWebJobsStorage" not in in_bicep


def test_main_bicep_provisions_the_platform() -> None:
    tree = parse(INFRA / "main.bicep")
    types = {resource_type.split("@")[0] for resource_type, _ in resources(tree).values()}
    assert {
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.Insights/components",
        "Microsoft.DocumentDB/databaseAccounts",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.Authorization/roleAssignments",
    } <= types
    source = (INFRA / "main.bicep").read_text()
    assert "'FlexConsumption'" in source
    assert "'EnableServerless'" in source
    assert "'${queueName}-poison'" in source  # the name the Functions host and the adapter use
    for role in [
        "00000000-0000-0000-0000-000000000002",  # Cosmos DB Built-in Data Contributor (sqlRoleDefinitions)
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "d5a91429-5739-47e2-a06b-3470a27159e7",  # EventGrid Data Sender
    ]:
        assert role in source
    registry = resources(tree)["registryContainer"][1]
    [paths] = list(properties(registry, "paths"))
    assert [string_value(node) for node in paths.named_children] == ["/id"]


def test_tenant_bicep_outputs_the_tenant_configuration() -> None:
    tree = parse(INFRA / "tenant.bicep")
    assert {"cosmosEndpoint", "database", "eventsContainer", "definitionsContainer",
            "eventGridTopicEndpoint", "eventGridTopicId", "tenantConfiguration"} <= set(outputs(tree))

    declared = resources(tree)
    [events_paths] = list(properties(declared["eventsContainer"][1], "paths"))
    assert [string_value(node) for node in events_paths.named_children] == ["/instanceId"]
    topic_type, topic = declared["topic"]
    assert topic_type.startswith("Microsoft.EventGrid/topics@")
    assert [string_value(node) for node in properties(topic, "inputSchema")] == ["CloudEventSchemaV1_0"]


def test_loaded_json_files_exist_and_the_indexing_policy_is_valid() -> None:
    for path in INFRA.glob("*.bicep"):
        for loaded in re.findall(r"loadJsonContent\('([^']+)'\)", path.read_text()):
            assert (path.parent / loaded).exists(), f"{path.name} loads {loaded}, which does not exist"
    policy = json.loads((INFRA / "events-indexing-policy.json").read_text())
    assert policy["indexingMode"] == "consistent"
    assert policy["compositeIndexes"], "an ORDER BY on two fields needs a composite index"
    for composite in policy["compositeIndexes"]:
        assert len(composite) >= 2
        assert all(entry["path"].startswith("/") and entry["order"] in ("ascending", "descending")
                   for entry in composite)
