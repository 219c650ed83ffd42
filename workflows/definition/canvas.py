"""Pure builders: ids in, Celery signatures out. No I/O, so tests compare them as data.

Every step is sent immutable (`si`) with (run_id, key, generation) only: inputs come from
PostgreSQL, and the generation fences the message to the dispatch that sent it. Task ids
are derived from (run, key, generation), so an operation can name every message it may
have sent (to revoke them) without storing anything first.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Signature

from reelflow.celery_app import app
from steps.engine.spec import StepSpec

_NAMESPACE = uuid.UUID("6f1f2f7e-3f4b-4f55-9a43-7c1f2c0d9a10")
EXPAND_TASK = "reelflow.expand_map"


def expander_key(mapped_step: str) -> str:
    """The pseudo step key of a map's expander (its task id, logs, `inspect`)."""
    return f"expand:{mapped_step}"


def task_id(run_id: uuid.UUID, key: str, generation: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{run_id}/{key}/{generation}"))


def step_signature(
    spec: StepSpec, run_id: uuid.UUID, key: str, generation: int, *, in_chord_header: bool
) -> Signature:
    """A step's message. Only chord header members keep a Celery result: the chord counts
    them. Everywhere else PostgreSQL holds the outcome, so the result backend is skipped
    (no STARTED or SUCCESS writes to Redis on every hop)."""
    options: dict[str, Any] = {"task_id": task_id(run_id, key, generation)}
    if not in_chord_header:
        options["ignore_result"] = True
    args = (str(run_id), key, generation)
    return app.signature(spec.task_name, args=args, immutable=True, **options)


def expander_signature(run_id: uuid.UUID, mapped_step: str, generation: int) -> Signature:
    return app.signature(
        EXPAND_TASK,
        args=(str(run_id), mapped_step, generation),
        immutable=True,
        task_id=task_id(run_id, expander_key(mapped_step), generation),
    )
