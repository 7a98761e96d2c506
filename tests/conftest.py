from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.azure_fixtures", "tests.cosmos_fixtures"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def expense_claim() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ROOT / "samples" / "expense-claim.json").read_text())
    return result
