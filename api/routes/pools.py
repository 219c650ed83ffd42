"""/pools: each slot pool (POOLS), who holds its slots and who waits for one."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Conn
from api.problems import documented
from api.schemas import PoolOut, SlotOut, WaitingOut
from db import repository as repo
from reelflow.settings import get_settings

router = APIRouter(tags=["operations"], responses=documented(500, 503))


@router.get("/pools", response_model=list[PoolOut])
async def list_pools(conn: Conn) -> list[PoolOut]:
    """Every declared pool: its size, each slot's holder (run, step, worker, since when),
    and the steps waiting per tenant and priority. A slot is held as claims and grants see
    it: a lease that lapsed while its worker still beats (an outage) is still held; one
    whose worker is silent past WORKER_DEAD_AFTER_SECONDS is free."""
    settings = get_settings()
    view = await repo.pools_view(conn, dead_after_s=settings.worker_dead_after_seconds)
    out = []
    for name, size in settings.pool_sizes().items():
        found = view.get(name, {"slots": [], "waiting": []})
        slot_rows = []
        for row in found["slots"]:
            live = bool(row["held"])
            slot_rows.append(
                SlotOut(
                    slot=row["slot"],
                    run_id=row["holder_run_id"] if live else None,
                    step=row["holder_key"] if live else None,
                    worker=row["holder_worker"] if live else None,
                    tenant=row["tenant"] if live else None,
                    since=row["since"] if live else None,
                    lease_expires_at=row["lease_expires_at"] if live else None,
                    reserved_for_step=row["reserved_for"],
                )
            )
        out.append(
            PoolOut(
                name=name,
                size=size,
                held=sum(1 for s in slot_rows if s.step is not None),
                slots=slot_rows,
                waiting=[WaitingOut.model_validate(w) for w in found["waiting"]],
            )
        )
    return out
