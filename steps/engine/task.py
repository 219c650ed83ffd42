"""`@step`: the one decorator that makes a typed function a durable Celery task.

The task body is the claim protocol around the function: claim (and read inputs), run,
complete or fail. A step function never sets a status, and never sees Celery or SQL.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from celery import Task
from celery.exceptions import Ignore
from pydantic import BaseModel
from structlog.contextvars import bound_contextvars

from db import claims
from db.claims import ClaimOutcome
from reelflow import tracing
from reelflow.celery_app import ENQUEUED_HEADER, app
from reelflow.errors import StepFailed
from reelflow.logs import bind_delivery
from reelflow.settings import get_settings
from steps.engine import bridge, slots
from steps.engine.attempt import run as run_attempt
from steps.engine.keys import changed_parts
from steps.engine.lease import dead_local_owner
from steps.engine.monitor import announce
from steps.engine.retry import DEFAULT_POLICY, RetryPolicy
from steps.engine.spec import (
    StepSpec,
    check_message_args,
    read_signature,
    step_of_key,
)

log = structlog.get_logger("reelflow.step")
F = TypeVar("F", bound=Callable[..., BaseModel])

#: Every step, by name: the compiler and the API read queues and dependencies from here.
STEPS: dict[str, StepSpec] = {}


def step(
    name: str | None = None,
    *,
    queue: str = "default",
    retry: RetryPolicy = DEFAULT_POLICY,
    soft_time_limit: int | None = None,
    time_limit: int | None = None,
    version: str | None = None,
    cache: bool = True,
    key_extra: Callable[[], str | None] | None = None,
    pool: str | None = None,
) -> Callable[[F], F]:
    """Register `fn` as durable step `name` (default: the function's name).

    `version`: bump it when the result changes for a reason its code does not show (the
    step's module and the modules of its package it imports are hashed already).
    `cache=False`: never reuse a result (a step with side effects). `key_extra`: more key
    material read when a key is made (None from it: do not reuse now). `pool`: hold a slot
    of this pool (POOLS) while it runs (default: the pool named like its queue, if any)."""

    def register(fn: F) -> F:
        spec = read_signature(
            fn,
            name=name or fn.__name__,
            queue=queue,
            retry=retry,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            version=version,
            cache=cache,
            key_extra=key_extra,
            pool=pool,
        )
        STEPS[spec.name] = spec
        options: dict[str, Any] = {
            "bind": True,
            "base": StepTask,
            "name": spec.task_name,
            "max_retries": None,
            "acks_late": True,
            "reject_on_worker_lost": True,
            "typing": False,
            "spec": spec,
        }
        if soft_time_limit is not None:
            options["soft_time_limit"] = soft_time_limit
        if time_limit is not None:
            options["time_limit"] = time_limit
        app.task(**options)(_body)
        fn.step_name = spec.name  # type: ignore[attr-defined]
        return fn

    return register


def _body(task: StepTask, run_id: str, key: str, generation: int = -1) -> None:
    # A message from before generations existed carries none: it is stale by definition.
    task.execute_step(uuid.UUID(run_id), key, generation)


#: How long a delivery waits before looking again when its key is being computed elsewhere.
AWAIT_S = 1.0

#: The step span records failures itself: Ignore (a stale message) and Retry are not errors.
_QUIET: dict[str, Any] = {"record_exception": False, "set_status_on_exception": False}


class StepTask(Task):  # type: ignore[type-arg]
    """Bookkeeping for every step: claim, context, retry with backoff, attempt records."""

    spec: StepSpec
    acks_late = True
    reject_on_worker_lost = True
    #: A failure the step and its run recorded: Celery marks the delivery failed, and logs
    #: it as expected (one INFO line, no traceback) rather than as an error.
    throws = (StepFailed,)

    def check_message(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """Why the worker's consumer must refuse a message for this step, or None: its
        arguments are not (run_id, key, generation), or the key is another step's (a
        forged message must not run this step's code on another step's row)."""
        problem = check_message_args(args, kwargs)
        if problem is None and step_of_key(args[1]) != self.spec.name:
            problem = f"key {args[1]!r} is not a key of step {self.spec.name}"
        return problem

    def log_fields(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """What every line about a delivery of this step carries, Celery's own too (bound
        by the worker's consumer and around the task): its run, step and key. The attempt
        is added once claimed."""
        if self.check_message(args, kwargs) is not None:
            return {}
        return {"run_id": args[0], "step": self.spec.name, "step_key": args[1]}

    def _owner(self) -> str:
        return f"{self.request.hostname or 'local'}/{os.getpid()}"

    def _claim(
        self, run_id: uuid.UUID, key: str, generation: int, steal_from: str | None = None
    ) -> claims.Claim:
        settings = get_settings()
        return bridge.run_db(  # type: ignore[no-any-return]
            claims.claim,
            run_id=run_id,
            key=key,
            generation=generation,
            deps=self.spec.single_deps,
            mapped_deps=self.spec.mapped_deps,
            owner=self._owner(),
            worker_id=bridge.worker_id(),
            hostname=self.request.hostname or "local",
            task_id=self.request.id or "",
            queue=self.spec.queue,
            lease_seconds=settings.step_lease_seconds,
            worker_dead_after=settings.worker_dead_after_seconds,
            wants_params=self.spec.params_adapter is not None,
            steal_from=steal_from,
            code_version=self.spec.version_now(),
            pool=slots.pool_of(self.spec),
            queued_for=self._queued_for(),
        )

    def _queued_for(self) -> float | None:
        """How long this delivery's message waited to be taken, by this worker's clock
        (since the enqueue time its publisher stamped); None for a message without one."""
        stamp = self.request.get(ENQUEUED_HEADER)
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            return None
        return max(0.0, time.time() - stamp)

    def _log_miss(self, claim: claims.Claim) -> None:
        """Say which part of the key changed, against the step's last key (or, for its
        first execution, the step's latest result in the workflow: one more lookup, made
        only when the line is logged)."""
        if not logging.getLogger("reelflow.step").isEnabledFor(logging.INFO):
            return
        before = claim.previous_parts
        if before is None:
            try:
                before = bridge.run_db(
                    claims.latest_parts, workflow=claim.workflow, step=self.spec.name
                )
            except Exception:  # a log line's comparison must never fail the step
                before = None
        changed = changed_parts(before, claim.key_parts or {})
        log.info("step_cache_miss", input_key=claim.input_key, changed=changed)

    def execute_step(self, run_id: uuid.UUID, key: str, generation: int) -> None:
        if step_of_key(key) != self.spec.name:  # the consumer refuses these; never run one
            log.warning("step_key_mismatch", run_id=str(run_id), step_key=key)
            bridge.count_ignored("not_runnable")
            raise Ignore()
        attributes = {
            **tracing.run_attributes(run_id, key),
            "reelflow.generation": generation,
            "reelflow.queue": self.spec.queue,
        }
        with (
            bound_contextvars(
                run_id=str(run_id),
                step=self.spec.name,
                step_key=key,
                task_id=self.request.id,
                generation=generation,
            ),
            tracing.tracer.start_as_current_span(
                "reelflow.step", attributes=attributes, **_QUIET
            ) as span,
        ):
            with tracing.tracer.start_as_current_span(
                "reelflow.claim", attributes=attributes
            ) as claiming:
                claim = self._claim(run_id, key, generation)
                if claim.outcome is ClaimOutcome.BUSY:
                    dead = dead_local_owner(claim.lease_owner, self.request.hostname or "local")
                    if dead:
                        log.warning("step_lease_taken_over", previous_owner=dead)
                        claim = self._claim(run_id, key, generation, steal_from=dead)
                claiming.set_attribute("reelflow.claim.outcome", claim.outcome.value)
                claiming.set_attribute(tracing.ATTEMPT, claim.attempt)
            span.set_attribute(tracing.ATTEMPT, claim.attempt)
            span.set_attribute("reelflow.claim.outcome", claim.outcome.value)
            if claim.outcome is ClaimOutcome.REUSED:
                # A result with this input key stood in: the function does not run.
                log.info("step_reused", reused_from=claim.reused_from,
                         input_key=claim.input_key, run_finished=claim.run_finished)  # fmt: skip
                announce(self, "reused", reused_from=claim.reused_from)
                return
            if claim.outcome is ClaimOutcome.NO_SLOT:
                # Its pool has no slot for it now: wait in PostgreSQL, not on this worker.
                pool = slots.pool_of(self.spec)
                assert pool is not None
                slots.wait_for_slot(
                    self, pool, step_id=claim.step_id, run_id=run_id, key=key,
                    tenant=claim.tenant, priority=claim.priority, generation=generation,
                )  # fmt: skip
                announce(self, "ignored", reason="waiting_for_slot")
                raise Ignore()
            if claim.outcome is ClaimOutcome.AWAITING:
                # The same key is being computed elsewhere: look again shortly, then reuse.
                log.info("step_awaiting_same_key", input_key=claim.input_key)
                wait = min(10.0, AWAIT_S * (1 + (self.request.retries or 0)))
                raise self.retry(countdown=wait, max_retries=None)
            if claim.outcome is ClaimOutcome.ALREADY_SUCCEEDED:
                # A redelivered message: let the chain move on; the next claim absorbs it.
                log.info("step_already_succeeded", attempt=claim.attempt)
                return
            if claim.outcome is not ClaimOutcome.CLAIMED:
                # Changes nothing; counted, and told to monitors so none shows it running.
                log.info(
                    "step_skipped",
                    attempt=claim.attempt,
                    outcome=claim.outcome.value,
                    status=claim.status,
                    run_generation=claim.generation,
                )
                bridge.count_ignored(claim.outcome.value)
                announce(self, "ignored", reason=claim.outcome.value)
                raise Ignore()
            # Until the delivery ends: Celery's line about its outcome names the attempt.
            bind_delivery(self.request, attempt=claim.attempt)
            if claim.input_key is not None:
                self._log_miss(claim)
            run_attempt(self, self.spec, run_id, key, claim)


__all__ = ["STEPS", "StepTask", "step"]
