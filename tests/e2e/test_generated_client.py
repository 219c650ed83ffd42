"""A client generated from the OpenAPI document (openapi-python-client) creates a run,
replays it with the same Idempotency-Key (a documented 200, parsed, not None) and reads it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import ApiProcess

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.mark.skipif(not GENERATOR.exists(), reason="openapi-python-client is a test extra")
def test_a_generated_client_creates_replays_and_reads_a_run(
    api: ApiProcess, tmp_path: Path
) -> None:
    (tmp_path / "openapi.json").write_bytes(httpx.get(f"{api.url}/openapi.json").content)
    subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none",
         "--output-path", "reelflow_client"],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module("reelflow_client")
        create_run = importlib.import_module("reelflow_client.api.runs.create_run")
        get_run = importlib.import_module("reelflow_client.api.runs.get_run")
        models = importlib.import_module("reelflow_client.models")
    finally:
        sys.path.remove(str(tmp_path))
    client = client_module.Client(base_url=api.url)
    # Params are typed per workflow: the schema's RunCreate is a union on `workflow`.
    body = models.ProbeRunCreate(workflow="probe", params=models.ProbeParams(width=2))
    first = create_run.sync_detailed(client=client, body=body, idempotency_key="generated-1")
    assert first.status_code == 201 and first.parsed.status in ("pending", "running")
    again = create_run.sync_detailed(client=client, body=body, idempotency_key="generated-1")
    assert again.status_code == 200 and again.parsed is not None
    assert again.parsed.id == first.parsed.id
    detail = get_run.sync(client=client, run_id=first.parsed.id)
    assert detail.workflow == "probe" and {s.key for s in detail.steps} >= {"a", "b", "e"}
    assert httpx.get(f"{api.url}/runs/{first.parsed.id}").json()["params"]["width"] == 2
