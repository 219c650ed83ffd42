"""reelflow: a durable short-video pipeline on Celery, with per-step state in PostgreSQL.

`celery -A reelflow ...` finds the Celery app through the lazy `app` attribute below, so
importing `reelflow` for its settings does not build the Celery app or import the steps.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from reelflow.celery_app import app

        return app
    raise AttributeError(name)
