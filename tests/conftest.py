from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.azure_fixtures", "tests.cosmos_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def expense_claim() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ROOT / "samples" / "expense-claim.json").read_text())
    return result


@pytest.fixture(scope="session", autouse=True)
def _cloudevents_follow_their_schemas() -> Iterator[None]:
    """Every CloudEvent built during the session is validated against its published schema (tests/event_contract.py)."""
    import engine.feed.cloudevents as mapping
    from tests.event_contract import CheckedCloudEvent

    original = mapping.CloudEvent
    mapping.CloudEvent = CheckedCloudEvent  # type: ignore[misc]
    try:
        yield
    finally:
        mapping.CloudEvent = original  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _no_event_broke_its_schema(_cloudevents_follow_their_schemas: None) -> Iterator[None]:
    from tests.event_contract import CONTRACT

    yield
    violations = CONTRACT.take_violations()
    assert violations == [], "CloudEvents that do not follow their published schema:\n" + "\n".join(violations[:20])
