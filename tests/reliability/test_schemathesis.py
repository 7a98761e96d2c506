"""schemathesis over /openapi.json against a running server, with every check it has, as its CLI runs them.

`schemathesis run --checks all` (a subprocess, the real CLI: the pytest plugin does not run under this pytest's
version) goes through the examples, coverage and fuzzing phases: no 5xx, statuses, content types, headers and
bodies as documented, invalid data refused, valid data accepted, `405` with `Allow` for undocumented methods,
`OPTIONS` naming every documented one, auth not ignored. Seeded and bounded (`--max-examples`), so it stays a few
tens of seconds in CI; `WAYMARK_FUZZ_EXAMPLES` raises the bound for a long run by hand.

Allowances, written into the config: `PUT …/workflows/{w}`, `PUT …/subscriptions/{name}` and `POST …/recover` may
answer `422` to data their schema allows, for what no schema says: a definition whose `id` is not the URL's, or
whose transition targets a state it does not define; a webhook endpoint whose host does not resolve (no network
here); a reset to a state the workflow lacks or to an event the instance does not have.
Every other operation must accept schema-valid data with 2xx, or 401/403/404/409 (a taken id, a missing
instance or message). `path.instance_id` names an instance that exists, so the instance routes reach their logic.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RunningServer, serve_api

pytestmark = pytest.mark.integration

TENANT = "fuzz"
EXAMPLES = int(os.environ.get("WAYMARK_FUZZ_EXAMPLES", "8"))

CONFIG = f"""
[parameters]
"path.tenant" = "{TENANT}"
"path.instance_id" = "fuzz-1"

[checks.positive_data_acceptance]
expected-statuses = ["2XX", "401", "403", "404", "409"]

[[operations]]
include-path-regex = "^/tenants/[{{]tenant[}}]/(workflows/[{{]workflow_id[}}]|subscriptions/[{{]name[}}])$"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/tenants/{{tenant}}/instances/{{instance_id}}/recover"
checks.positive_data_acceptance.expected-statuses = ["2XX", "401", "403", "404", "409", "422"]
"""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    # One client sends thousands of requests, hundreds of them without a key on purpose (`ignored_auth`,
    # `missing_required_header`): the rate limits, which would answer those 429, are off here.
    with serve_api(tmp_path_factory.mktemp("fuzz"), workers=1, rate_limit_per_key=0,
                   rate_limit_per_address=0) as server:
        key = server.onboard(TENANT)
        with server.client(key) as http:
            created = http.post(f"/tenants/{TENANT}/instances", headers={"Prefer": "wait=10"},
                                json={"workflowId": "expense-claim", "id": "fuzz-1", "context": {"claimant": "x"}})
            assert created.status_code == 201, created.text
        yield server, key


def test_schemathesis_with_every_check_passes(fuzz_server: tuple[RunningServer, str], tmp_path: Path) -> None:
    server, key = fuzz_server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{server.url}/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1", "--request-timeout", "30",
               "--header", f"Authorization: Bearer {key}", "--no-color", "--suppress-health-check", "all"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) >= 25, output[-3000:]  # every operation, not a few
