"""Probes (/livez, /readyz), the full /health report, and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from api.problems import documented
from api.schemas import CheckOut, HealthOut, ProbeOut, WorkersOut
from db import repository as repo
from db.engine import get_engine
from db.states import ATTEMPT_OUTCOMES, RUN_LIVE, RUN_TERMINAL, STEP_IN_FLIGHT
from reelflow import broker
from reelflow.celery_app import QUEUES
from reelflow.settings import get_settings
from workflows.definition.registry import all_workflows

router = APIRouter(tags=["operations"], responses=documented(500, 503))


async def _database(timeout: float) -> CheckOut:
    try:
        async with asyncio.timeout(timeout):
            async with get_engine().connect() as conn:
                await repo.ping(conn)
        return CheckOut(ok=True)
    except Exception as exc:
        return CheckOut(ok=False, detail=type(exc).__name__)


async def _broker(timeout: float) -> CheckOut:
    """A connection to the broker, Redis or RabbitMQ alike (kombu, in a thread)."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.to_thread(broker.ping, timeout)
        return CheckOut(ok=True)
    except Exception as exc:
        return CheckOut(ok=False, detail=type(exc).__name__)


async def _workers(timeout: float) -> WorkersOut:
    """Workers whose heartbeat is fresh, read from PostgreSQL: no broadcast to wait out."""
    try:
        async with asyncio.timeout(timeout):
            async with get_engine().connect() as conn:
                rows = await repo.live_workers(
                    conn, dead_after_s=get_settings().worker_dead_after_seconds
                )
    except Exception as exc:
        return WorkersOut(ok=False, detail=type(exc).__name__)
    names = sorted(str(r["hostname"]) for r in rows)
    by_queue = {q: sorted(str(r["hostname"]) for r in rows if q in r["queues"]) for q in QUEUES}
    empty = [q for q, names_ in by_queue.items() if not names_]
    return WorkersOut(
        ok=not empty,
        names=names,
        queues=by_queue,
        detail=f"no worker on queue {', '.join(empty)}" if empty else None,
    )


@router.get("/livez", response_model=ProbeOut, response_model_exclude_none=True)
async def livez() -> ProbeOut:
    """Liveness: the process answers. No I/O, so a database blip never restarts the API."""
    return ProbeOut(status="ok")


@router.get("/readyz", response_model=ProbeOut, responses={503: {"model": ProbeOut}})
async def readyz() -> JSONResponse:
    """Readiness: the database and the broker answer, each within half a second."""
    database, broker = await asyncio.gather(_database(0.5), _broker(0.5))
    ok = database.ok and broker.ok
    body = ProbeOut(status="ok" if ok else "unavailable", database=database, broker=broker)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503)


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health() -> JSONResponse:
    """The full report: 200 when the database and broker answer and every queue has a live
    worker; 503 (`unhealthy`) otherwise. Never waits on a broadcast."""
    database, broker, workers = await asyncio.gather(_database(2), _broker(2), _workers(2))
    ok = database.ok and broker.ok and workers.ok
    body = HealthOut(
        status="ok" if ok else "unhealthy", database=database, broker=broker, workers=workers
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


BUCKETS_MS = (10, 50, 100, 500, 1000, 5000, 10_000, 30_000, 60_000, 300_000, 900_000)


class _Snapshot(Collector):
    """Metrics read at scrape time from bounded sources only: the work in flight (partial
    indexes), the engine counters, the worker heartbeats and the queues' lengths."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Any:
        counts = self.data["counters"]
        yield self._gauge("reelflow_runs_active", "Runs pending or running, by status",
                          "status", RUN_LIVE, self.data["in_flight"]["runs"])  # fmt: skip
        yield self._gauge("reelflow_steps_in_flight", "Steps queued, running or retrying",
                          "status", STEP_IN_FLIGHT, self.data["in_flight"]["steps"])  # fmt: skip
        finished = CounterMetricFamily(
            "reelflow_runs_finished", "Runs that finished, by outcome", labels=["status"]
        )
        for status in sorted(RUN_TERMINAL):
            finished.add_metric([status.value], counts.get(("runs_finished", status.value), 0))
        yield finished
        attempts = CounterMetricFamily(
            "reelflow_step_attempts",
            "Attempts that ended, by step and outcome (retrying: a retry follows)",
            labels=["step", "outcome"],
        )
        steps = sorted({label.split("|")[0] for name, label in counts if name == "attempts"})
        for step in steps:
            for outcome in ATTEMPT_OUTCOMES:
                attempts.add_metric(
                    [step, outcome], counts.get(("attempts", f"{step}|{outcome}"), 0)
                )
        yield attempts
        yield self._durations(counts)
        for name, doc in (
            ("deliveries_ignored", "Deliveries that changed nothing, by reason"),
            ("runs_requeued", "Runs the reconciler dispatched again, by reason"),
            ("messages_rejected", "Messages workers refused as malformed or unroutable"),
        ):
            family = CounterMetricFamily(f"reelflow_{name}", doc, labels=["reason"])
            for (counter, label), value in sorted(counts.items()):
                if counter == name:
                    family.add_metric([label], value)
            yield family
        yield from self._cache(counts)
        workers = GaugeMetricFamily(
            "reelflow_workers_online", "Workers with a fresh heartbeat, by queue", labels=["queue"]
        )
        for queue, names in self.data["workers"].queues.items():
            workers.add_metric([queue], len(names))
        yield workers
        depth = GaugeMetricFamily("reelflow_queue_depth", "Messages waiting", labels=["queue"])
        for queue, n in self.data["depth"].items():
            depth.add_metric([queue], n)
        yield depth

    @staticmethod
    def _cache(counts: dict[tuple[str, str], int]) -> Iterator[CounterMetricFamily]:
        """Reuses (counted as they happen) and misses: the executions (attempts) of the
        steps of each workflow that may reuse a result."""
        reused = CounterMetricFamily(
            "reelflow_cache_reused",
            "Steps that reused a result with their input key instead of running",
            labels=["workflow", "step"],
        )
        for (counter, label), value in sorted(counts.items()):
            if counter == "cache_reused":
                reused.add_metric(label.split("|", 1), value)
        yield reused
        missed = CounterMetricFamily(
            "reelflow_cache_missed",
            "Executions of steps that may reuse a result, with none of their key to reuse",
            labels=["workflow", "step"],
        )
        ran: dict[str, int] = {}
        for (counter, label), value in counts.items():
            if counter == "attempts":
                step = label.split("|", 1)[0]
                ran[step] = ran.get(step, 0) + value
        for workflow in sorted(all_workflows().values(), key=lambda w: w.name):
            for step in workflow.step_names:
                if workflow.spec(step).cache and step in ran:
                    missed.add_metric([workflow.name, step], ran[step])
        yield missed

    @staticmethod
    def _gauge(
        name: str, doc: str, label: str, states: frozenset[Any], found: dict[str, int]
    ) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=[label])
        for state in sorted(states):
            family.add_metric([state.value], found.get(state.value, 0))  # zeros too
        return family

    @staticmethod
    def _durations(counts: dict[tuple[str, str], int]) -> HistogramMetricFamily:
        hist = HistogramMetricFamily(
            "reelflow_step_duration_seconds", "Finished attempts by step", labels=["step"]
        )
        steps = sorted({label for name, label in counts if name == "duration_ms_sum"})
        for step in steps:
            running, buckets = 0, []
            for bound in BUCKETS_MS:
                running += counts.get(("duration_bucket", f"{step}|{bound}"), 0)
                buckets.append((str(bound / 1000), running))
            total = running + counts.get(("duration_bucket", f"{step}|+Inf"), 0)
            buckets.append(("+Inf", total))
            hist.add_metric([step], buckets, counts.get(("duration_ms_sum", step), 0) / 1000)
        return hist


async def _queue_depth() -> dict[str, int]:
    try:
        async with asyncio.timeout(3):
            return await asyncio.to_thread(broker.queue_depths, QUEUES, 2.0)
    except Exception:
        return {}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics() -> Response:
    """reelflow's metrics (the same from every API process: they come from the database),
    then this process's own: HTTP requests, CPU, memory, file descriptors, GC."""
    async with get_engine().connect() as conn:
        in_flight = await repo.in_flight(conn)
        counters = await repo.counters(conn)
    registry = CollectorRegistry()
    registry.register(
        _Snapshot(
            {
                "in_flight": in_flight,
                "counters": counters,
                "workers": await _workers(2),
                "depth": await _queue_depth(),
            }
        )
    )
    body = generate_latest(registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
