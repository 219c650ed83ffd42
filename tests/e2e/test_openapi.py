"""The OpenAPI document says what the API answers, and nothing it cannot; /docs works
offline (its assets come from an installed package)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ApiProcess


@pytest.fixture(scope="module")
def doc(api: ApiProcess) -> Iterator[dict[str, Any]]:
    yield httpx.get(f"{api.url}/openapi.json", timeout=10).json()


def test_operation_ids_are_names_a_generated_client_can_use(doc: dict[str, Any]) -> None:
    ids = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert ids == {
        "create_run", "list_runs", "get_run", "get_steps", "get_attempts", "resume_run",
        "retry_step", "cancel_run", "get_artifact", "run_events", "list_workflows",
        "livez", "readyz", "health", "metrics", "prune_runs",
        "list_run_attempts", "list_run_history", "list_workers", "list_states",
        "revise_run", "list_revisions", "list_pools",
        "upload_asset", "get_asset", "list_assets",
    }  # fmt: skip


def test_every_answer_is_documented_and_only_those(doc: dict[str, Any]) -> None:
    create = doc["paths"]["/runs"]["post"]["responses"]
    # 503: the database is away (Retry-After); 403/415: a cross-origin or form-shaped POST
    assert {"200", "201", "202", "400", "403", "413", "415", "422", "503"} <= set(create)
    assert not {"401", "409"} & set(create)  # no token configured; nothing to conflict
    for verb in ("/runs/{run_id}/resume", "/runs/{run_id}/steps/{key}/retry"):
        answers = doc["paths"][verb]["post"]["responses"]
        assert {"200", "202", "404", "409"} <= set(answers) and "401" not in answers
        assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PlanOut")
    assert "securitySchemes" not in doc.get("components", {})
    events = doc["paths"]["/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    artifact = doc["paths"]["/runs/{run_id}/artifacts/{path}"]["get"]["responses"]["200"]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in events and "application/octet-stream" in artifact["content"]
    assert any(t.startswith("text/plain") for t in metrics)
    upload = doc["paths"]["/assets"]["post"]
    assert {"200", "201", "403", "413", "415", "422"} <= set(upload["responses"])
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"


def test_dry_runs_answer_200_with_the_plan(api: ApiProcess) -> None:
    with api.client(timeout=30) as client:
        run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}}).json()
        run_id = run_id["id"]
        for _ in range(300):
            if client.get(f"/runs/{run_id}").json()["status"] == "succeeded":
                break
            time.sleep(0.1)
        plan = client.post(f"/runs/{run_id}/steps/d/retry", params={"dry_run": "true"})
        assert plan.status_code == 200 and plan.json()["run"] == ["d", "e"], plan.text
        assert client.get("/runs", params={"created_before": "0.5"}).status_code == 422
        assert client.get("/runs", params={"created_before": "2030-01-01T00:00:00Z"}).is_success


def test_docs_load_their_assets_from_this_server(api: ApiProcess) -> None:
    page = httpx.get(f"{api.url}/docs", timeout=10)
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = httpx.get(f"{api.url}/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000
