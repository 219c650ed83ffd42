"""Fault injection, a testing aid applied around the step function: with
ALLOW_FAULT_INJECTION on, an attempt the run planned to fail (`db.faults`) raises
InjectedFailure before the function runs. Off (production), nothing is looked up."""

from __future__ import annotations

import uuid

from db import faults
from reelflow.errors import InjectedFailure
from reelflow.settings import get_settings
from steps.engine.bridge import run_db


def check(run_id: uuid.UUID, key: str, attempt: int) -> None:
    """Raise InjectedFailure if the run asked this attempt of `key` to fail."""
    if not get_settings().allow_fault_injection:
        return
    planned = run_db(faults.planned_failures, run_id=run_id, key=key)
    if attempt <= planned:
        raise InjectedFailure(f"injected failure {attempt} of {planned} for {key}")
