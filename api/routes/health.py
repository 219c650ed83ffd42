"""/health (database, broker, workers) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from api.problems import documented
from api.schemas import CheckOut, HealthOut, WorkersOut
from db import repository as repo
from db.engine import get_engine
from reelflow.celery_app import QUEUES, app
from reelflow.settings import get_settings

router = APIRouter(tags=["operations"], responses=documented(500))


async def _database() -> CheckOut:
    try:
        async with asyncio.timeout(3):
            async with get_engine().connect() as conn:
                await repo.ping(conn)
        return CheckOut(ok=True)
    except Exception as exc:
        return CheckOut(ok=False, detail=type(exc).__name__)


async def _broker() -> CheckOut:
    client = aioredis.from_url(get_settings().broker_url, socket_connect_timeout=2)
    try:
        async with asyncio.timeout(3):
            await client.ping()
        return CheckOut(ok=True)
    except Exception as exc:
        return CheckOut(ok=False, detail=type(exc).__name__)
    finally:
        await client.aclose()


async def _workers(broker_ok: bool) -> WorkersOut:
    if not broker_ok:
        return WorkersOut(ok=False, detail="broker down")
    try:
        replies = await asyncio.wait_for(
            asyncio.to_thread(app.control.ping, timeout=1.0), timeout=3
        )
    except Exception as exc:
        return WorkersOut(ok=False, detail=type(exc).__name__)
    names = sorted(name for reply in replies or [] for name in reply)
    return WorkersOut(ok=bool(names), names=names, detail=None if names else "no worker answered")


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health() -> JSONResponse:
    """200 when the database and broker answer; 503 otherwise. Workers are reported."""
    database, broker = await asyncio.gather(_database(), _broker())
    workers = await _workers(broker.ok)
    ok = database.ok and broker.ok
    body = HealthOut(
        status="ok" if ok and workers.ok else ("degraded" if ok else "down"),
        database=database,
        broker=broker,
        workers=workers,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


BUCKETS_MS = (10, 50, 100, 500, 1000, 5000, 10_000, 30_000, 60_000, 300_000, 900_000)


class _Snapshot(Collector):
    """Metrics read from the database and broker at scrape time, so every worker counts."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Any:
        runs = GaugeMetricFamily("reelflow_runs", "Runs by status", labels=["status"])
        for status, n in self.data["counts"]["runs"].items():
            runs.add_metric([status], n)
        yield runs
        steps = GaugeMetricFamily("reelflow_steps", "Steps by status", labels=["status"])
        for status, n in self.data["counts"]["steps"].items():
            steps.add_metric([status], n)
        yield steps
        hist = HistogramMetricFamily(
            "reelflow_step_duration_seconds",
            "Finished attempts by step and queue",
            labels=["step", "queue"],
        )
        for (step, queue), (buckets, total, count) in self.data["durations"].items():
            pairs = [(str(b / 1000), c) for b, c in zip(BUCKETS_MS, buckets, strict=True)]
            hist.add_metric([step, queue], [*pairs, ("+Inf", count)], total / 1000)
        yield hist
        retries = GaugeMetricFamily(
            "reelflow_step_retries", "Attempts that ended in a retry, by step", labels=["step"]
        )
        for step, n in self.data["retries"].items():
            retries.add_metric([step], n)
        yield retries
        depth = GaugeMetricFamily("reelflow_queue_depth", "Messages waiting", labels=["queue"])
        for queue, n in self.data["depth"].items():
            depth.add_metric([queue], n)
        yield depth


async def _queue_depth() -> dict[str, int]:
    client = aioredis.from_url(get_settings().broker_url, socket_connect_timeout=2)
    try:
        async with asyncio.timeout(3):
            return {q: int(await client.llen(q)) for q in QUEUES}
    except Exception:
        return {}
    finally:
        await client.aclose()


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    async with get_engine().connect() as conn:
        counts = await repo.count_by_status(conn)
        durations = await repo.attempt_duration_buckets(conn, BUCKETS_MS)
        retries = await repo.retries_by_step(conn)
    registry = CollectorRegistry()
    registry.register(
        _Snapshot(
            {
                "counts": counts,
                "durations": durations,
                "retries": retries,
                "depth": await _queue_depth(),
            }
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
