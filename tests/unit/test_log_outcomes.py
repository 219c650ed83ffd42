"""Outcomes a run records are not errors in the log, and real errors still are: Celery's
line for a chord whose member failed is demoted only when that member failed for good
(`StepFailed`) or was revoked (a cancel)."""

from __future__ import annotations

import logging

import pytest
from celery.exceptions import ChordError, TaskRevokedError

from reelflow.errors import StepFailed
from reelflow.logs import ExpectedOutcomes


def _chord_line(cause: Exception, logger: str = "celery.backends.redis") -> logging.LogRecord:
    error = ChordError(f"Dependency 1 raised {cause!r}")
    error.__cause__ = cause
    return logging.LogRecord(
        logger, logging.ERROR, __file__, 1, "Chord %r raised: %r", ("g", error),
        (ChordError, error, None),
    )  # fmt: skip


@pytest.mark.parametrize(
    "cause", [StepFailed("c[1] failed: Boom: no"), TaskRevokedError("terminated")]
)
def test_a_chord_failed_by_a_recorded_outcome_is_one_quiet_line(cause: Exception) -> None:
    record = _chord_line(cause)
    assert ExpectedOutcomes(logging.INFO).filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert not ExpectedOutcomes(logging.WARNING).filter(_chord_line(cause))  # below the level


@pytest.mark.parametrize(
    "record",
    [
        _chord_line(RuntimeError("the callback could not be sent")),  # a real failure
        _chord_line(StepFailed("x"), logger="reelflow.step"),  # not Celery's chord line
    ],
)
def test_anything_else_keeps_its_level_and_traceback(record: logging.LogRecord) -> None:
    assert ExpectedOutcomes(logging.INFO).filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
