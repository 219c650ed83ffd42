"""/workers: the workers online, what each is running, and the queues' depths."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from api.deps import Conn
from api.problems import documented
from api.schemas import RunningStepOut, WorkerOut, WorkersPage
from db import repository as repo
from reelflow import broker
from reelflow.celery_app import QUEUES
from reelflow.settings import get_settings

router = APIRouter(responses=documented(500, 503))


@router.get("/workers", response_model=WorkersPage, tags=["operations"])
async def list_workers(conn: Conn) -> WorkersPage:
    """Workers online (fresh heartbeats), the steps each is running, and queue depths."""
    rows = await repo.workers_with_steps(
        conn, dead_after_s=get_settings().worker_dead_after_seconds
    )
    try:
        async with asyncio.timeout(3):
            depths: dict[str, int | None] = dict(
                await asyncio.to_thread(broker.queue_depths, QUEUES, 2.0)
            )
    except Exception:
        depths = dict.fromkeys(QUEUES)
    workers = [
        WorkerOut(
            hostname=r["hostname"], pid=r["pid"], queues=list(r["queues"]),
            started_at=r["started_at"], last_seen=r["last_seen"],
            running=[RunningStepOut.model_validate(s) for s in r["running"]],
        )
        for r in rows
    ]  # fmt: skip
    return WorkersPage(workers=workers, queues=depths)
