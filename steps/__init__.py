"""Pipeline stages: plain typed functions made durable Celery tasks by `@step`.

What a stage author imports; the engine behind it lives in `steps.engine`.
"""

from steps.engine.context import Artifact, StepContext
from steps.engine.retry import RetryPolicy
from steps.engine.task import step

__all__ = ["Artifact", "RetryPolicy", "StepContext", "step"]
