"""Schemathesis against the running API, every phase (examples, coverage, fuzzing and the
stateful phase), every check but one heuristic: no failures.

Left out: `positive_data_acceptance` (a cursor that matches its pattern but was never
issued is rightly refused), /health (its 503 without workers is documented, and a test
worker may be busy), and /admin/prune (it deletes; tested in test_history.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, ApiProcess

pytestmark = pytest.mark.slow
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis comes with the test extra")
def test_schemathesis_finds_nothing(api: ApiProcess, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{api.url}/openapi.json",
         "--max-examples", "8", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance",
         "--exclude-path", "/health", "--exclude-path", "/admin/prune",
         "--workers", "1", "--seed", "1", "--report", "har",
         "--report-har-path", str(tmp_path / "calls.har"),
         # as any script: it says it is not a browser form (api.security)
         "--header", "X-Requested-With: schemathesis"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary
    assert "Stateful" in summary and "failure" not in summary.splitlines()[-1], summary


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis comes with the test extra")
def test_generated_runs_mostly_start(api: ApiProcess, tmp_path: Path) -> None:
    """The schema describes each workflow's params (a union on `workflow`), so runs built
    from it alone are mostly accepted: 201 or 202, not 422."""
    har = tmp_path / "calls.har"
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{api.url}/openapi.json", "--mode", "positive",
         "--include-path-regex", "^/runs$", "--include-method", "POST",
         "--phases", "examples,fuzzing", "--max-examples", "40", "--checks", "not_a_server_error",
         "--workers", "1", "--seed", "2", "--report", "har", "--report-har-path", str(har),
         "--header", "X-Requested-With: schemathesis"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    answers = [
        (entry["response"]["status"], entry["response"]["content"].get("text", "")[:200])
        for entry in json.loads(har.read_text())["log"]["entries"]
        if entry["request"]["method"] == "POST"
        and entry["request"]["url"].split("?")[0].endswith("/runs")
    ]
    started = [status for status, _ in answers if status in (200, 201, 202)]
    # A key the generator reuses with another body is rightly refused: not the schema's doing.
    fair = [a for a in answers if "idempotency_key_reused" not in a[1]]
    refused = [a for a in fair if a[0] not in (200, 201, 202)]
    assert len(started) > len(fair) * 0.6, (len(started), len(fair), refused[:10])
