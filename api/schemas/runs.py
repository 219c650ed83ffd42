"""Request and response models of runs, their steps and attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self
from urllib.parse import quote

from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)

from db.records import AttemptRecord, RunRecord, StepRecord
from db.states import RunStatus, StepStatus
from workflows.watch.headlines import RunHeadline


def _no_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL characters in text or JSON: refuse them at the edge."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k)
            _no_nul(v)
    if isinstance(value, list):
        for v in value:
            _no_nul(v)
    return value


def _integral(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema counts it); strings
    and booleans stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]


#: What a tenant name may be (1-100 of these characters): it becomes a metric label.
TENANT_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=100, examples=["probe"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"width": 3}])
    priority: JsonInt = Field(
        5, ge=0, le=9, description="0-9: a pool's free slot goes to the highest priority first"
    )
    tenant: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=TENANT_PATTERN,
        description="who the run is for (slots go round-robin across tenants); default: the"
        " token's name, or `default`",
        examples=["team-a"],
    )
    cache: StrictBool = Field(
        True,
        description="false: every step runs afresh, reusing no earlier result with its input key",
    )
    faults: dict[str, Annotated[JsonInt, Field(ge=0, le=100)]] | None = Field(
        None,
        max_length=1000,
        description="testing aid: step key -> attempts that fail (needs ALLOW_FAULT_INJECTION)",
        examples=[{"c[2]": 1}],
    )

    @field_validator("workflow", "params", "faults")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return _no_nul(value)


class RunHeadlineOut(BaseModel):
    """What a run is, in one line of the runs list."""

    title: str | None = Field(
        None, description="what it is about: a short_video's title, or its topic until then"
    )
    thumbnail_url: str | None = Field(None, description="its thumbnail (an artifact URL)")
    failed_step: str | None = Field(None, description="a failed run: the step that failed")
    failed_reason: str | None = Field(None, description="a failed run: why, in one line")

    @classmethod
    def of(cls, headline: RunHeadline) -> Self:
        key = headline.thumbnail_key or ""
        owner, _, path = key.partition("/")  # `<run id>/<step>/<name>`: that run's artifact
        url = f"/runs/{owner}/artifacts/{quote(path)}" if path and _is_uuid(owner) else None
        return cls(title=headline.title, thumbnail_url=url, failed_step=headline.failed_step,
                   failed_reason=headline.failed_reason)  # fmt: skip


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class RunSummary(BaseModel):
    """A run as listed: everything but its params (on GET /runs/{id})."""

    id: uuid.UUID
    workflow: str
    workflow_version: int
    status: RunStatus
    error: dict[str, Any] | None
    generation: int = Field(description="dispatch generation: bumped by resume, retry, requeue")
    priority: int = 5
    tenant: str = "default"
    resume_count: int = Field(description="deprecated: the same as `generation`")
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    steps_done: int | None = Field(None, description="steps succeeded (superseded left out)")
    steps_total: int | None = Field(None, description="steps of the run (superseded left out)")
    headline: RunHeadlineOut | None = Field(
        None, description="on GET /runs: what the run is and, failed, where and why"
    )

    @classmethod
    def of(
        cls,
        run: RunRecord,
        progress: tuple[int, int] | None = None,
        headline: RunHeadline | None = None,
    ) -> Self:
        done, total = progress if progress is not None else (None, None)
        return cls.model_validate(
            {**run.model_dump(), "resume_count": run.generation,
             "steps_done": done, "steps_total": total,
             "headline": RunHeadlineOut.of(headline) if headline else None}
        )  # fmt: skip


class RunOut(RunSummary):
    params: dict[str, Any]


class StepOut(BaseModel):
    key: str
    step: str
    status: StepStatus
    attempts: int
    max_attempts: int
    queue: str
    item_index: int | None
    output: Any
    error: dict[str, Any] | None
    celery_task_id: str | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    input_key: str | None = Field(
        None, description="sha256 of what its result depends on (code, params, inputs)"
    )
    reused_from: dict[str, Any] | None = Field(
        None,
        description="where its output came from when it did not run: {run_id, step_key,"
        " attempt} (`key` too, the same as step_key),"
        " or {revision} for an output a revision replaced",
    )
    progress: dict[str, int] | None = Field(
        None, description="how far it got as it last reported, {done, total} (a render's frames)"
    )

    @classmethod
    def of(cls, step: StepRecord) -> StepOut:
        return cls.model_validate({**step.model_dump(), "duration_ms": step.duration_ms})


class RunDetail(RunOut):
    steps: list[StepOut]


class AttemptOut(BaseModel):
    attempt: int
    status: str
    celery_task_id: str | None
    worker_hostname: str | None
    queue: str | None
    enqueued_at: datetime | None = Field(
        None,
        description="when the message that started it could be taken (sent, or its retry"
        " countdown over); `started_at` minus this is the time it waited in the queue."
        " Null for attempts recorded before it was",
    )
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    input_key: str | None = Field(
        None, description="the input key this attempt computed for (sha256, hex)"
    )

    @classmethod
    def of(cls, attempt: AttemptRecord) -> AttemptOut:
        return cls.model_validate(attempt.model_dump())


class RunAttemptOut(AttemptOut):
    """An attempt in a run's timeline: its step, and how long its message waited in the
    queue (recorded: `started_at - enqueued_at`; a resume or a retry never stretches it)."""

    step_key: str
    waited_ms: float | None = Field(description="time waited in the queue; null: not recorded")


class EventOut(BaseModel):
    """An entry of a run's history: an action (by an operator or the reconciler) or a step
    that failed, will retry or was lost (by the worker that saw it)."""

    kind: str = Field(
        description="created, resumed, step_retried, revised, cancelled, reconciled (actions);"
        " step_failed, step_retrying, step_lost (what happened to a step's attempt)"
    )
    actor: str = Field(description="an operator, `worker:<hostname>` or `reconciler`")
    detail: dict[str, Any]
    created_at: datetime
    step: str | None = Field(None, description="the step key, for a step's entry")
    attempt: int | None = Field(None, description="the attempt, for a step's entry")


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class PlanOut(BaseModel):
    run_id: uuid.UUID
    operation: str
    dry_run: bool = True
    run: list[str] = Field(description="step keys that would run")
    skip: dict[str, str] = Field(description="step keys that would not run, and why")
    stops: list[str] = Field(
        [],
        description="steps still in flight from before the run stopped: the operation stops"
        " them and runs them again under its generation (they are in `run` too)",
    )


def answer(result: RunRecord | Any) -> RunOut | JSONResponse:
    """What a resume or retry answers: the changed run (202, as declared), or a dry run's
    plan (200, documented beside it)."""
    if isinstance(result, RunRecord):
        return RunOut.of(result)
    plan = PlanOut(run_id=result.run_id, operation=result.operation, run=result.run,
                   skip=result.skip, stops=result.stops)  # fmt: skip
    return JSONResponse(plan.model_dump(mode="json"), status_code=200)
