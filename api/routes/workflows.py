"""/workflows: what can be run (each step's queue, the params schema, the layout and the
canvas), and /states: the status vocabulary of runs, steps and attempts. The web UI draws
from these instead of keeping copies of its own."""

from __future__ import annotations

from fastapi import APIRouter

from api.problems import documented
from api.schemas import RunStates, StatesOut, StepInfo, StepStates, WorkflowOut
from db.states import (
    RUN_CANCELLABLE,
    RUN_LIVE,
    RUN_RESUMABLE,
    RUN_RETRYABLE,
    RUN_TERMINAL,
    STEP_IN_FLIGHT,
    STEP_PRECEDENCE,
    STEP_TERMINAL,
    AttemptStatus,
    RunStatus,
    StepStatus,
    values,
)
from workflows.assets.fields import asset_fields
from workflows.definition.registry import all_workflows

router = APIRouter(tags=["workflows"], responses=documented(500, 503))


@router.get("/workflows", response_model=list[WorkflowOut])
async def list_workflows() -> list[WorkflowOut]:
    out = []
    for wf in all_workflows().values():
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
                asset_params=dict(asset_fields(wf.params_model)),
                layout=wf.columns(),
                graph=wf.graph(),
            )
        )
    return out


@router.get("/states", response_model=StatesOut)
async def list_states() -> StatesOut:
    """Every status of runs, steps and attempts, and which operations each allows."""
    return StatesOut(
        run=RunStates(
            statuses=[s.value for s in RunStatus],
            terminal=values(RUN_TERMINAL),
            live=values(RUN_LIVE),
            resumable=values(RUN_RESUMABLE),
            retryable=values(RUN_RETRYABLE),
            cancellable=values(RUN_CANCELLABLE),
        ),
        step=StepStates(
            statuses=[s.value for s in StepStatus],
            terminal=values(STEP_TERMINAL),
            in_flight=values(STEP_IN_FLIGHT),
            precedence=[s.value for s in STEP_PRECEDENCE],
        ),
        attempt=[s.value for s in AttemptStatus],
    )
