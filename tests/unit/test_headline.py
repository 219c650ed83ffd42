"""A run's headline in the runs list: the title is the first declared path that holds text,
the thumbnail an artifact's key turned into its URL, a failure one line; and every shipped
workflow's headline names fields its params or its steps' output models really have."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from api.schemas import RunHeadlineOut
from db.records import RunRecord
from db.states import RunStatus
from workflows.definition.headline import PARAMS, Headline
from workflows.definition.registry import all_workflows
from workflows.watch.headlines import REASON_CHARS, RunHeadline, failure

HEADLINE = Headline(title=("s.title", "t.chosen.title", "params.topic"), thumbnail="v.thumb")


def test_the_first_path_that_holds_text_is_the_title() -> None:
    outputs = {("t", ("chosen", "title")): "From trends", ("s", ("title",)): "  "}
    assert HEADLINE.read({"topic": "bees"}, outputs) == ("From trends", None)
    assert HEADLINE.read({"topic": "bees"}, {}) == ("bees", None)
    assert HEADLINE.read({}, {("s", ("title",)): "Scripted"}) == ("Scripted", None)
    assert HEADLINE.read({"topic": 3}, {}) == (None, None)  # not text: not a title
    assert HEADLINE.step_fields() == [
        ("s", ("title",)),
        ("t", ("chosen", "title")),
        ("v", ("thumb",)),
    ]


def test_the_thumbnail_is_an_artifacts_key_and_its_url_that_runs_artifact() -> None:
    run_id = uuid.uuid4()
    key = f"{run_id}/compose_video/thumb nail.png"
    assert HEADLINE.read({}, {("v", ("thumb",)): {"key": key, "size": 1}}) == (None, key)
    assert HEADLINE.read({}, {("v", ("thumb",)): {"path": "/x.png"}}) == (None, None)
    out = RunHeadlineOut.of(RunHeadline(thumbnail_key=key))
    assert out.thumbnail_url == f"/runs/{run_id}/artifacts/compose_video/thumb%20nail.png"
    assert RunHeadlineOut.of(RunHeadline(thumbnail_key="elsewhere/x.png")).thumbnail_url is None


def _run(status: RunStatus, error: dict[str, Any] | None) -> RunRecord:
    now = datetime.now(UTC)
    return RunRecord.model_validate(
        {"id": uuid.uuid4(), "workflow": "probe", "workflow_version": 1, "params": {},
         "status": status, "error": error, "generation": 0, "idempotency_key": None,
         "created_at": now, "updated_at": now, "started_at": now, "finished_at": now}
    )  # fmt: skip


def test_a_failure_is_its_step_and_one_line() -> None:
    error = {"type": "RenderError", "message": "out of memory\n  at frame 3", "step": "r[1]"}
    assert failure(_run(RunStatus.FAILED, error)) == ("r[1]", "RenderError: out of memory")
    reconciled = {"type": "UnknownWorkflow", "message": "gone", "step": None}
    assert failure(_run(RunStatus.FAILED, reconciled)) == (None, "UnknownWorkflow: gone")
    long = {"type": "E", "message": "x" * 1000, "step": "a"}
    assert len(failure(_run(RunStatus.FAILED, long))[1] or "") == REASON_CHARS
    assert failure(_run(RunStatus.CANCELLED, error)) == (None, None)
    assert failure(_run(RunStatus.SUCCEEDED, None)) == (None, None)


def _has(model: type[BaseModel], path: list[str]) -> bool:
    """Does `model` have the field at `path` (through nested models and optionals)?"""
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    kinds = [field.annotation, *get_args(field.annotation)]
    return any(
        isinstance(k, type) and issubclass(k, BaseModel) and _has(k, path[1:]) for k in kinds
    )


@pytest.mark.parametrize("workflow", list(all_workflows().values()), ids=lambda w: w.name)
def test_a_workflows_headline_names_fields_that_exist(workflow: Any) -> None:
    declared: Headline = workflow.headline
    mapped = set(workflow.mapped_steps)
    for path in [*declared.title, *([declared.thumbnail] if declared.thumbnail else [])]:
        first, *rest = path.split(".")
        if first == PARAMS:
            assert _has(workflow.params_model, rest), path
            continue
        assert first in workflow.step_names and first not in mapped, path
        output = workflow.spec(first).output_type
        assert output is not None and _has(output, rest), path
