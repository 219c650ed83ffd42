"""Pipeline stages: plain typed functions made durable Celery tasks by `@step`.

This is the engine's public face, the one thing a stage imports: the decorator, the
context a step receives, artifact references, retry policies. The engine behind it lives
in `steps.engine` and may change without a stage noticing.
"""

from steps.engine.context import Artifact, StepContext, file_digest
from steps.engine.retry import RetryPolicy
from steps.engine.task import step

__all__ = ["Artifact", "RetryPolicy", "StepContext", "file_digest", "step"]
