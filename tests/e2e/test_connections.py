"""The connection budget is visible: /health and /metrics say how many database
connections the answering API process has in use, open, and may open at most."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from tests.support import ApiProcess


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert found, f"{name} missing"
    return float(found.group(1))


def test_health_and_metrics_count_this_process_connections(
    api: ApiProcess, env: dict[str, str]
) -> None:
    limit = int(env["DATABASE_POOL_SIZE"]) + int(env["DATABASE_MAX_OVERFLOW"])
    with api.client() as client:
        health = client.get("/health").json()
        connections = health["connections"]
        assert api.proc is not None and connections["pid"] == api.proc.pid
        assert connections["pooler"] == "none" and connections["limit"] == limit
        assert 1 <= connections["open"] <= limit  # /health itself opened them
        assert 0 <= connections["in_use"] <= connections["open"]

        with ThreadPoolExecutor(8) as pool:  # concurrent reads open more, never past limit
            assert all(r.status_code == 200 for r in pool.map(client.get, ["/runs"] * 24))
        metrics = client.get("/metrics").text
    assert _gauge(metrics, "reelflow_db_connections_limit") == limit
    assert 1 <= _gauge(metrics, "reelflow_db_connections_open") <= limit
    # /metrics read the counters on one connection and gave it back before counting
    assert _gauge(metrics, "reelflow_db_connections_in_use") == 0
