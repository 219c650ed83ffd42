"""Step I/O: the context every step receives and the artifact reference outputs carry."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from reelflow.errors import StepStopped


class Artifact(BaseModel):
    """A file a step wrote, referenced from its output by path, size and sha256."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Artifact:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return cls(path=str(path), size=path.stat().st_size, sha256=digest.hexdigest())


@dataclass(frozen=True)
class StepContext:
    """What a step may know about its own execution; nothing of Celery or SQL."""

    run_id: uuid.UUID
    key: str
    attempt: int
    artifact_root: Path
    item_index: int | None = None
    #: Set by the heartbeat when the run was cancelled or this attempt lost its lease.
    stop_requested: Callable[[], bool] = lambda: False

    def check_cancelled(self) -> None:
        """Long steps call this now and then: it raises StepStopped when they should stop."""
        if self.stop_requested():
            raise StepStopped(f"{self.key}: the run was cancelled or the step taken over")

    @property
    def artifact_dir(self) -> Path:
        """`ARTIFACT_ROOT/<run_id>/<step_key>/`: deterministic, so a rerun overwrites."""
        return self.artifact_root / str(self.run_id) / self.key

    def artifact(self, name: str) -> AbstractContextManager[Path]:
        """Yield a temporary path; on success it is renamed atomically to `artifact_dir/name`."""
        return atomic_file(self.artifact_dir / name)


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; once the block succeeds it replaces `final` in
    one rename, so no reader ever sees half a file (and a failed attempt leaves nothing)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    # The extension stays last: encoders pick the container format from it.
    tmp = final.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{final.name}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
