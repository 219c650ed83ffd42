"""Probes (/livez, /readyz), the full /health report, and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from api.metrics import Connections, Snapshot
from api.problems import RETRY_OUTAGE_S, documented
from api.schemas import CheckOut, ConnectionsOut, HealthOut, ProbeOut, WorkersOut
from db import repository as repo
from db.engine import get_engine, pool_usage
from db.errors import drain_timeouts, restore_timeouts
from reelflow import broker
from reelflow.celery_app import QUEUES
from reelflow.settings import get_settings

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


def _connections() -> ConnectionsOut:
    pooler = get_settings().database_pooler
    return ConnectionsOut(pid=os.getpid(), pooler=pooler, **asdict(pool_usage()))


#: An unready or unhealthy answer says when to look again, as every 503 of the API does.
_RETRY = {"Retry-After": str(RETRY_OUTAGE_S)}


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
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503,
                        headers=None if ok else _RETRY)  # fmt: skip


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health() -> JSONResponse:
    """The full report: 200 when the database and broker answer and every queue has a live
    worker; 503 (`unhealthy`) otherwise. Never waits on a broadcast."""
    database, broker, workers = await asyncio.gather(_database(2), _broker(2), _workers(2))
    ok = database.ok and broker.ok and workers.ok
    body = HealthOut(
        status="ok" if ok else "unhealthy", database=database, broker=broker, workers=workers,
        connections=_connections(),
    )  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503,
                        headers=None if ok else _RETRY)  # fmt: skip


async def _queue_depth() -> dict[str, int]:
    try:
        async with asyncio.timeout(3):
            return await asyncio.to_thread(broker.queue_depths, QUEUES, 2.0)
    except Exception:
        return {}


async def _count_timeouts() -> None:
    """This process's statements stopped by a timeout, into the engine counters (workers
    write theirs as they go; an API process, when scraped)."""
    found = drain_timeouts()
    if not found:
        return
    try:
        async with get_engine().begin() as conn:
            for kind, n in found.items():
                await repo.bump_counter(conn, name="database_timeouts", label=kind, by=n)
    except BaseException:
        restore_timeouts(found)
        raise


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics() -> Response:
    """reelflow's metrics (the same from every API process: they come from the database),
    then this process's own: HTTP requests, CPU, memory, file descriptors, GC."""
    await _count_timeouts()
    async with get_engine().connect() as conn:
        in_flight = await repo.in_flight(conn)
        counters = await repo.counters(conn)
        pools = await repo.pools_view(conn, dead_after_s=get_settings().worker_dead_after_seconds)
    registry = CollectorRegistry()
    registry.register(Connections(pool_usage()))
    registry.register(
        Snapshot(
            {
                "in_flight": in_flight,
                "counters": counters,
                "workers": await _workers(2),
                "depth": await _queue_depth(),
                "pools": pools,
            }
        )
    )
    body = generate_latest(registry) + generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
