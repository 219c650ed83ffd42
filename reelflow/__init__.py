"""reelflow: a durable short-video pipeline on Celery, with per-step state in PostgreSQL.

`celery -A reelflow ...` finds the Celery app through the lazy `app` attribute below: it
loads the worker's modules (step tasks, worker hooks, the `inspect steps` command, named
as strings in `reelflow.celery_app`), so importing `reelflow` for its settings builds no
Celery app and imports nothing above the ground floor.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from reelflow.celery_app import app, load_worker_modules

        load_worker_modules()
        return app
    raise AttributeError(name)
