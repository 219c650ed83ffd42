"""Pure builders: ids in, Celery signatures out. No I/O, so tests compare them as data.

Every step is sent immutable (`si`) with (run_id, key) only: inputs come from PostgreSQL.
Task ids are derived from (run, key, generation), so an operation can name every message
it may have sent (to revoke them) without storing anything first.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Signature

from reelflow.celery_app import app
from steps.definition import StepSpec

_NAMESPACE = uuid.UUID("6f1f2f7e-3f4b-4f55-9a43-7c1f2c0d9a10")
EXPAND_TASK = "reelflow.expand_map"


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
    return app.signature(spec.task_name, args=(str(run_id), key), immutable=True, **options)


def expander_signature(run_id: uuid.UUID, mapped_step: str, generation: int) -> Signature:
    key = f"expand:{mapped_step}"
    return app.signature(
        EXPAND_TASK,
        args=(str(run_id), mapped_step),
        immutable=True,
        task_id=task_id(run_id, key, generation),
    )
