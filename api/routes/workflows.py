"""/workflows: what can be run, with each step's queue and the params schema."""

from __future__ import annotations

from fastapi import APIRouter

from api.problems import documented
from api.schemas import StepInfo, WorkflowOut
from workflows.registry import WORKFLOWS

router = APIRouter(tags=["workflows"], responses=documented(500, 503))


@router.get("/workflows", response_model=list[WorkflowOut])
async def list_workflows() -> list[WorkflowOut]:
    out = []
    for wf in WORKFLOWS.values():
        mapped = wf.mapped_steps
        steps = [
            StepInfo(
                name=name,
                queue=wf.spec(name).queue,
                max_attempts=wf.spec(name).retry.max_attempts,
                reads=list(wf.spec(name).dep_names),
                mapped_over=mapped[name].over if name in mapped else None,
            )
            for name in wf.step_names
        ]
        out.append(
            WorkflowOut(
                name=wf.name,
                version=wf.version,
                description=wf.description,
                steps=steps,
                params_schema=wf.params_model.model_json_schema(),
            )
        )
    return out
