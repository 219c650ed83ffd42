"""/runs/{id}/revise and /runs/{id}/revisions: change a run (its params, a step's output),
audited, rerunning exactly what the change touches; and the record of every change."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Actor, Conn
from api.problems import GUARDED, documented
from api.schemas import RevisionIn, RevisionOut, RevisionRecordOut, RunOut
from db import repository as repo
from workflows.runs import revise

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(422, 500, 503))


@router.post(
    "/{run_id}/revise",
    status_code=202,
    response_model=RevisionOut,
    responses={
        200: {"model": RevisionOut, "description": "dry_run=true: the plan, nothing changed"},
        **documented(400, 404, 409, 413),  # 400: a body that is not UTF-8
        **GUARDED,
    },
)
async def revise_run(
    run_id: uuid.UUID, body: RevisionIn, actor: Actor, dry_run: bool = False
) -> RevisionOut | JSONResponse:
    """Patch the run's params (JSON merge patch) and/or replace steps' outputs, with a
    reason. The steps whose input keys change rerun (each with the reason), the rest keep
    their results; `dry_run=true` answers with that plan and changes nothing. 409 while
    the run (or one of its steps) runs."""
    plan, run = await revise.revise_run(
        run_id, params_patch=body.params, outputs=body.outputs, reason=body.reason,
        actor=actor, dry_run=dry_run,
    )  # fmt: skip
    answer = RevisionOut(**plan.model_dump(), run=None if dry_run else RunOut.of(run))
    if dry_run:
        return JSONResponse(answer.model_dump(mode="json"), status_code=200)
    return answer


@router.get(
    "/{run_id}/revisions", response_model=list[RevisionRecordOut], responses=documented(404)
)
async def list_revisions(run_id: uuid.UUID, conn: Conn) -> list[RevisionRecordOut]:
    """Every revision of the run, oldest first: who, when, why, and the change."""
    await repo.require_run(conn, run_id=run_id)
    return [
        RevisionRecordOut.model_validate(r) for r in await repo.list_revisions(conn, run_id=run_id)
    ]
