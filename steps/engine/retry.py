"""Retry policies as values: how many attempts, how long between them, which errors count.

Step retries are Celery retries (a new message after a countdown), so the policy computes
the countdown; database writes from workers retry in-process with tenacity (`db.errors`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pydantic import ValidationError

from reelflow.errors import PermanentStepError, TransientStepError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: delay ~ U(0, min(cap, base * 2**(attempt-1)))."""

    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    jitter: bool = True
    #: Errors never retried. Everything else is presumed transient (a flaky GPU, a timeout),
    #: within the attempt budget; raise PermanentStepError to fail at once.
    permanent: tuple[type[BaseException], ...] = (PermanentStepError, ValidationError)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, TransientStepError):
            return True
        return not isinstance(exc, self.permanent)

    def countdown(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** max(attempt - 1, 0))
        if not self.jitter:
            return float(ceiling)
        # Half fixed, half jitter: a floor keeps retries from bunching at zero.
        return float(ceiling / 2 + (rng or random).uniform(0, ceiling / 2))


DEFAULT_POLICY = RetryPolicy()


def broker_countdown(countdown: float, *, whole_seconds: bool) -> float:
    """The countdown the broker can honour. RabbitMQ's native delayed delivery (quorum
    queues) counts whole seconds from 1 up, and refuses anything shorter."""
    return float(max(1, math.ceil(countdown))) if whole_seconds else countdown
