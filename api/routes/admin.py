"""/admin: operations for the people who run reelflow (guarded like every mutation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Actor
from api.problems import GUARDED, documented
from workflows.runs.retention import PruneReport, prune

router = APIRouter(prefix="/admin", tags=["admin"], responses=documented(422, 500, 503))


@router.post("/prune", response_model=PruneReport, responses=GUARDED)
async def prune_runs(
    actor: Actor,
    older_than: Annotated[str, Query(pattern=r"^\d{1,6}[smhdw]$", examples=["30d"])] = "30d",
    dry_run: bool = True,
) -> PruneReport:
    """Delete runs that finished more than `older_than` ago (with their steps, attempts,
    events and artifacts). A dry run (the default) only counts them."""
    return await prune(older_than, dry_run=dry_run)
