"""One attempt of a claimed step: its lease held and renewed, its context, the function
run, and the outcome recorded through the claim protocol (complete, or fail: a retry
after a countdown while attempts are left, else the step and its run fail)."""

from __future__ import annotations

import contextlib
import shutil
import time
import traceback as tb
import uuid
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore
from opentelemetry import trace

from db import outcomes
from db.claims import Claim
from reelflow import tracing
from reelflow.errors import PermanentStepError, StepFailed, StepStopped
from reelflow.settings import get_settings
from reelflow.storage import artifact_store
from steps.engine import bridge, faults, keys, slots
from steps.engine.context import StepContext
from steps.engine.lease import Lease, LeaseRenewer
from steps.engine.monitor import announce
from steps.engine.retry import broker_countdown
from steps.engine.spec import StepSpec, build_kwargs, index_of_key

log = structlog.get_logger("reelflow.step")


def run(task: Task[Any, Any], spec: StepSpec, run_id: uuid.UUID, key: str, claim: Claim) -> None:
    """One attempt of a claimed step: hold its lease, run the function, record the outcome."""
    settings = get_settings()
    scratch = settings.scratch_dir
    lease = Lease(step_id=claim.step_id, key=key, attempt=claim.attempt)
    renewer = LeaseRenewer.get(settings.step_lease_seconds)
    renewer.hold(lease)
    started = time.perf_counter()
    log.info("step_started", step=spec.name, queue=spec.queue)
    try:
        if claim.attempt > claim.max_attempts:  # earlier attempts died with their worker
            raise PermanentStepError(
                f"{key} used up its {claim.max_attempts} attempts: its workers were lost"
                " (a step that kills its worker every time is not run forever)"
            )
        faults.check(run_id, key, claim.attempt)  # a testing aid; off in production
        ctx = StepContext(
            run_id=run_id,
            key=key,
            attempt=claim.attempt,
            store=artifact_store(),
            scratch=scratch / str(run_id) / f"{key}.{claim.attempt}",
            item_index=index_of_key(key),
            stop_requested=lambda: lease.cancelled or lease.lost,
            step_id=claim.step_id,
            input_key=claim.input_key,
            report=lambda progress: setattr(lease, "progress", progress),
        )
        kwargs = build_kwargs(
            spec, ctx=ctx, params=claim.params, item=claim.item, inputs=claim.inputs
        )
        try:
            output = spec.fn(**kwargs)
        finally:
            shutil.rmtree(ctx.scratch, ignore_errors=True)
            with contextlib.suppress(OSError):
                ctx.scratch.parent.rmdir()  # the run's folder, once no attempt uses it
        if spec.output_type is not None and not isinstance(output, spec.output_type):
            raise TypeError(f"step {spec.name} returned {type(output).__name__}")
    except StepStopped:
        renewer.release(lease)
        log.info("step_cancelled")
        announce(task, "ignored", reason="cancelled")
        raise Ignore() from None
    except Exception as exc:
        renewer.release(lease)
        record_failure(task, spec, run_id, key, claim, exc)
        raise  # unreachable: record_failure raises Retry or StepFailed
    except BaseException:  # SoftTimeLimit's cousins, KeyboardInterrupt, SystemExit
        renewer.release(lease)
        raise
    renewer.release(lease)
    with tracing.tracer.start_as_current_span(
        "reelflow.complete", attributes=tracing.run_attributes(run_id, key, claim.attempt)
    ) as completing:
        recorded = output.model_dump(mode="json")
        # What came out, for its dependents' keys: not how this attempt got there (a
        # model's `unkeyed` fields: frames rendered now, chunks reused from before).
        unkeyed: frozenset[str] = getattr(type(output), "unkeyed", frozenset())
        keyed = {k: v for k, v in recorded.items() if k not in unkeyed}
        done = bridge.run_db(
            outcomes.complete,
            step_id=claim.step_id,
            run_id=run_id,
            attempt=claim.attempt,
            output=recorded,
            output_digest=keys.digest(keyed),
            artifacts=keys.artifact_keys(recorded),
        )
        completing.set_attribute("reelflow.complete.recorded", done.recorded)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    if done.released_pool:
        _hand_over(done.released_pool)
    for name in done.checkpoints:  # the pieces the result was made of (best effort:
        try:  # pruning the run deletes whatever is left)
            artifact_store().delete_prefix(f"{run_id}/{key}/{name}/")
        except Exception as exc:
            log.warning("checkpoint_files_not_deleted", name=name, error=repr(exc))
    if not done.recorded:
        log.warning("step_result_discarded", status=done.status, attempts=done.attempts)
        announce(task, "ignored", reason="superseded_attempt")
        raise Ignore()
    log.info("step_succeeded", duration_ms=elapsed_ms, run_finished=done.run_finished)


def record_failure(
    task: Task[Any, Any],
    spec: StepSpec,
    run_id: uuid.UUID,
    key: str,
    claim: Claim,
    exc: Exception,
) -> None:
    """Record a failed attempt: a retry (Celery's, after a countdown) while the step has
    attempts left and the error is transient; otherwise the step fails, and its run, and
    Celery is told `StepFailed`: an outcome the run recorded, one WARNING line here (the
    traceback is on the attempt row), not an error for Celery to log with its traceback."""
    retrying = spec.retry.is_transient(exc) and claim.attempt < claim.max_attempts
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {str(exc)[:200]}")
    failure = outcomes.FailureRecord(
        error_type=type(exc).__name__,
        message=str(exc)[:4000],
        traceback="".join(tb.format_exception(exc))[-20000:],
        retrying=retrying,
    )
    recorded, run_failed, released = bridge.run_db(
        outcomes.fail,
        step_id=claim.step_id,
        run_id=run_id,
        key=key,
        attempt=claim.attempt,
        failure=failure,
    )
    if released:
        _hand_over(released)
    if not recorded:
        log.warning("step_failure_discarded", error_type=failure.error_type)
        announce(task, "ignored", reason="superseded_attempt")
        raise Ignore() from exc
    if retrying:
        settings = get_settings()
        countdown = broker_countdown(
            spec.retry.countdown(claim.attempt),
            whole_seconds=settings.broker_kind == "amqp" and settings.amqp_queue_type == "quorum",
        )
        log.warning(
            "step_retrying",
            error_type=failure.error_type,
            error=failure.message,
            countdown_s=round(countdown, 3),
        )
        raise task.retry(exc=exc, countdown=countdown, max_retries=None)
    log.warning(
        "step_failed",
        error_type=failure.error_type,
        error=failure.message,
        run_failed=run_failed,
    )
    raise StepFailed(f"{key} failed: {failure.error_type}: {failure.message[:500]}") from exc


def _hand_over(pool: str) -> None:
    """The slot this attempt gave back goes to the next waiting step (best effort: the
    workers' maintenance hands slots over every second anyway)."""
    try:
        slots.hand_over(pool)
    except Exception as exc:
        log.warning("slot_hand_over_failed", pool=pool, error=repr(exc))
