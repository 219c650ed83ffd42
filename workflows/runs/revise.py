"""Revisions: change a run (a JSON merge patch of its params, the replaced output of a
step), audited, and rerun exactly the steps the change touches (`revision_plan` says
which). The dry run answers with that plan and changes nothing; a revision writes an
immutable revision row, applies the change and dispatches what the plan says reruns, in one
transaction with its outbox intent (under the run's lock, with the fencing and 409 rules of
resume and retry).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.engine import get_engine
from db.records import RunRecord
from db.repository.cache import KeyRow
from db.states import RUN_RETRYABLE, RunStatus, StepStatus
from reelflow.errors import field_errors
from reelflow.storage import ArtifactMissing, artifact_store
from steps.engine import keys
from workflows.definition.registry import get_workflow
from workflows.definition.workflow import Workflow
from workflows.runs import admission, dispatch, relay
from workflows.runs.operations import load_idle
from workflows.runs.revision_plan import InvalidRevision, Walk
from workflows.runs.revision_plan import plan as plan_revision

log = structlog.get_logger("reelflow.revise")


class RevisionPlan(BaseModel):
    """What a revision does: the steps that rerun (and why, in words), those whose results
    stand, the outputs it replaces, and the map items it drops."""

    run_id: uuid.UUID
    dry_run: bool
    revision: int | None = None
    rerun: dict[str, str] = {}
    reuse: list[str] = []
    edited: list[str] = []
    superseded: list[str] = []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


async def revise_run(
    run_id: uuid.UUID,
    *,
    params_patch: dict[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    reason: str,
    actor: str = "api",
    dry_run: bool = False,
) -> tuple[RevisionPlan, RunRecord]:
    """Plan (and, unless `dry_run`, apply and dispatch) a revision of a stopped run."""
    if not params_patch and not outputs:
        raise InvalidRevision(
            "a revision changes params or outputs: both are empty",
            [{"field": "params", "message": "nothing to revise"}],
        )
    async with get_engine().begin() as conn:
        run, _ = await load_idle(conn, run_id, allowed=RUN_RETRYABLE, verb="revise")
        workflow = get_workflow(run.workflow)
        after, assets = run.params, []
        if params_patch:
            patched = merge_patch(run.params, params_patch)
            admission.check_size(patched)
            model = workflow.validate_params(patched)
            assets = await admission.check_assets(conn, model)
            after = model.model_dump(mode="json")
        rows = await repo.key_rows(conn, run_id=run.id)
        replaced = await asyncio.to_thread(_stored, _validated(workflow, rows, outputs or {}))
        walk = Walk(workflow, run, run.params, after, replaced, patch=params_patch or {})
        await plan_revision(conn, walk, rows)
        plan = RevisionPlan(
            run_id=run.id, dry_run=dry_run, rerun=walk.rerun, reuse=walk.reuse,
            edited=sorted(walk.outputs), superseded=walk.superseded,
        )  # fmt: skip
        if dry_run:
            return plan, run
        await repo.add_asset_refs(conn, run_id=run.id, asset_ids=assets)
        plan.revision, intent = await _apply(conn, walk, plan, reason=reason, actor=actor)
    if intent is not None:
        await relay.publish(intent)
    log.info("run_revised", run_id=str(run_id), revision=plan.revision,
             rerun=sorted(plan.rerun), edited=plan.edited)  # fmt: skip
    async with get_engine().connect() as conn:
        return plan, await repo.require_run(conn, run_id=run_id)


def _validated(
    workflow: Workflow, rows: list[KeyRow], outputs: Mapping[str, Any]
) -> dict[str, Any]:
    """Each replaced output checked against its step's output model, as JSON."""
    present = {r.key: r for r in rows}
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, output in outputs.items():
        row = present.get(key)
        if row is None:
            errors.append({"field": f"outputs.{key}", "message": "the run has no such step"})
            continue
        model = workflow.spec(row.step).output_type
        try:
            value = model.model_validate(output) if model else output
        except ValidationError as exc:
            found = field_errors(exc.errors())
            errors += [{**e, "field": f"outputs.{key}.{e['field']}".rstrip(".")} for e in found]
            continue
        clean[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    if errors:
        raise InvalidRevision("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return clean


def _stored(outputs: dict[str, Any]) -> dict[str, Any]:
    """Every artifact a replaced output references must be a file the store holds, named
    by its key, with its size and sha256; its path is then the store's own. A revision
    can point a step at stored bytes, never at any other file a worker could read."""
    store, errors = artifact_store(), []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, Mapping) and keys.is_artifact(value):
            key = value.get("key")
            try:
                held = isinstance(key, str) and store.matches(
                    key, int(value["size"]), str(value["sha256"])
                )
            except (ArtifactMissing, TypeError, ValueError):
                held = False
            if not held:
                errors.append({"field": where, "message": "an artifact must name a stored file"
                               " by its key, with that file's size and sha256"})  # fmt: skip
                return value
            return {**value, "path": store.location(str(key))}
        if isinstance(value, Mapping):
            return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(value)]
        return value

    checked = {key: walk(output, f"outputs.{key}") for key, output in outputs.items()}
    if errors:
        raise InvalidRevision("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return checked


async def _apply(
    conn: AsyncConnection,
    walk: Walk,
    plan: RevisionPlan,
    *,
    reason: str,
    actor: str,
) -> tuple[int, int | None]:
    run, workflow = walk.run, walk.workflow
    before = await _outputs_of(conn, run.id, sorted(walk.outputs))
    number = await repo.add_revision(
        conn, run_id=run.id, actor=actor, reason=reason,
        params_patch=walk.patch,
        params_before=walk.params_before, params_after=walk.params_after,
        outputs_before=before, outputs_after=walk.outputs,
        plan=plan.model_dump(mode="json", include={"rerun", "reuse", "edited", "superseded"}),
    )  # fmt: skip
    if walk.params_after != walk.params_before:
        await repo.set_param_digests(
            conn, run_id=run.id, params=walk.params_after,
            digests=workflow.param_digests(walk.params_after),
        )  # fmt: skip
    for key, output in walk.outputs.items():
        await repo.replace_output(
            conn, run_id=run.id, key=key, output=output, output_digest=keys.digest(output),
            artifacts=keys.artifact_keys(output), origin={"revision": number},
        )  # fmt: skip
    for mapped, items in walk.items.items():
        await repo.set_items(conn, run_id=run.id, items=[
            workflow.new_step(mapped, walk.params_after, index=i, item=item)
            for i, item in enumerate(items)
            if f"{mapped}[{i}]" in walk.reset
        ])  # fmt: skip
        await repo.set_maps(conn, run_id=run.id, expanded={mapped: len(items)}, removed=())
    await repo.set_steps_status(
        conn, run_id=run.id, keys=walk.superseded, status=StepStatus.SUPERSEDED,
        only_from={StepStatus.PENDING, StepStatus.SUCCEEDED, StepStatus.FAILED,
                   StepStatus.CANCELLED},
    )  # fmt: skip
    reset = [k for k in walk.reset if k not in walk.outputs]
    if not reset and not walk.remap and run.status is RunStatus.SUCCEEDED:
        await repo.add_event(conn, run_id=run.id, kind="revised", actor=actor,
                             detail={"revision": number, **plan.model_dump(
                                 mode="json", include={"rerun", "edited"})})  # fmt: skip
        return number, None  # nothing reruns: the run stays as it is, with the new outputs
    await admission.check_capacity(conn, idempotency_key=None)
    generation = await dispatch.reset_steps(
        conn, workflow, run, keys=reset, names=set(), remap=walk.remap
    )
    await repo.add_event(
        conn, run_id=run.id, kind="revised", actor=actor,
        detail={"revision": number, "reason": reason,
                **plan.model_dump(mode="json", include={"rerun", "edited", "superseded"})},
    )  # fmt: skip
    intent = await dispatch.write_intent(conn, workflow, run, generation, reason="revised")
    return number, intent


async def _outputs_of(conn: AsyncConnection, run_id: uuid.UUID, keys_: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys_:
        found = await repo.get_step_output(conn, run_id=run_id, key=key)
        out[key] = found[1] if found else None
    return out


__all__ = ["InvalidRevision", "RevisionPlan", "merge_patch", "revise_run"]
