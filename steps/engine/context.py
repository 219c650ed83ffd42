"""Step I/O: the context every step receives and the artifact reference outputs carry."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from db import outcomes
from db.repository import asset_file
from reelflow.errors import AssetVanished, StepStopped
from reelflow.storage import ArtifactMissing, ArtifactStore
from steps.engine.bridge import run_db


class Artifact(BaseModel):
    """A file a step wrote, referenced from its output: where it is (a file path, or an
    s3:// URL), its key in the artifact store, its size and sha256."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str
    #: `<run_id>/<step_key>/<name>`; None in outputs written before keys were recorded.
    key: str | None = None


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read once."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@dataclass
class Written:
    """A file a step is writing: write to `path`; `artifact` is set once it is in place."""

    path: Path
    _artifact: Artifact | None = None

    @property
    def artifact(self) -> Artifact:
        if self._artifact is None:
            raise RuntimeError(f"{self.path.name} is not in place yet (read it after the block)")
        return self._artifact


@dataclass(frozen=True)
class StepContext:
    """What a step may know about its own execution; nothing of Celery or SQL."""

    run_id: uuid.UUID
    key: str
    attempt: int
    store: ArtifactStore
    #: This attempt's worker-local folder (downloads, files before upload); removed after.
    scratch: Path
    item_index: int | None = None
    #: Set by the lease renewer when the run was cancelled or this attempt lost its lease.
    stop_requested: Callable[[], bool] = lambda: False
    #: The step's row and the execution's input key (checkpoints are kept per key).
    step_id: int = 0
    input_key: str | None = None
    #: Records how far the step got (the lease renewer writes it to the step's row).
    report: Callable[[dict[str, int]], None] = lambda progress: None

    def progress(self, done: int, total: int) -> None:
        """Say how far the step got (`done` of `total`): shown on its row while it runs."""
        self.report({"done": done, "total": total})

    def checkpoint(self, name: str) -> Checkpoint:
        """Pieces of this execution (a render's chunks) kept across attempts of the same
        input key: a retry after a crash keeps the finished ones and does only the rest."""
        return Checkpoint(self, name)

    def check_cancelled(self) -> None:
        """Long steps call this now and then: it raises StepStopped when they should stop."""
        if self.stop_requested():
            raise StepStopped(f"{self.key}: the run was cancelled or the step taken over")

    def artifact_key(self, name: str) -> str:
        """`<run_id>/<step_key>/<name>`: deterministic, so a rerun overwrites."""
        return f"{self.run_id}/{self.key}/{name}"

    @contextmanager
    def artifact(self, name: str) -> Iterator[Written]:
        """Write `name`: yields a temporary local path; once the block succeeds the file is
        placed atomically in the store (a failed block places nothing), and
        `written.artifact` references it.

        Stored bytes never change under a key: other runs may reuse a result that refers to
        them. A rerun that writes the same bytes overwrites in place; one that writes other
        bytes (a revised scene) places them beside, under a key named by their digest."""
        key = self.artifact_key(name)
        placed: dict[str, object] = {}

        def resolve(tmp: Path) -> str:
            size, sha256 = file_digest(tmp)
            same = self.store.matches(key, size, sha256)
            final = key if same is None or same else f"{key.rsplit('/', 1)[0]}/{sha256[:16]}/{name}"
            placed.update(key=final, size=size, sha256=sha256)
            return final

        with self.store.writer(key, self.scratch, resolve=resolve) as tmp:
            written = Written(tmp)
            yield written
        final = str(placed["key"])
        written._artifact = Artifact(
            path=self.store.location(final), key=final, size=int(str(placed["size"])),
            sha256=str(placed["sha256"]),
        )  # fmt: skip

    def asset(self, asset_id: uuid.UUID | str) -> Artifact:
        """An uploaded asset (POST /assets), as an input artifact: read it with `local()`.
        AssetVanished (permanent) when its row or its file is gone."""
        found = run_db(asset_file, asset_id=uuid.UUID(str(asset_id)))
        if found is None:
            raise AssetVanished(f"asset {asset_id} is gone (pruned, or never uploaded)")
        key = str(found["key"])
        if self.store.size(key) is None:
            raise AssetVanished(f"the file of asset {asset_id} is gone ({key})")
        return Artifact(path=self.store.location(key), key=key, size=int(found["size"]),
                        sha256=str(found["sha256"]))  # fmt: skip

    def local(self, artifact: Artifact) -> Path:
        """A local file with an input artifact's bytes (downloaded into scratch when the
        store is remote), checked against its recorded size."""
        if artifact.key is None:
            return Path(artifact.path)  # an output from before keys were recorded
        path = self.store.local_copy(artifact.key, self.scratch / "inputs")
        size = path.stat().st_size
        if size != artifact.size:
            raise ArtifactMissing(f"{artifact.key} is {size} bytes, not {artifact.size}")
        return path


@dataclass
class Checkpoint:
    """A step's named set of finished pieces. `done()` are those recorded for this input
    key (by this attempt or an earlier one); `piece(i, file)` writes one (an artifact
    under `<name>/`, in place once the block succeeds) and records it at once. Once the
    step succeeds its pieces are deleted, rows and files: the result replaces them."""

    ctx: StepContext
    name: str

    def done(self) -> dict[int, Artifact]:
        if self.ctx.input_key is None:
            return {}  # keyed by nothing: pieces could be of other inputs
        found = run_db(outcomes.load_checkpoints, step_id=self.ctx.step_id, name=self.name,
                       input_key=self.ctx.input_key)  # fmt: skip
        pieces = {index: Artifact.model_validate(a) for index, a in found.items()}
        # Only pieces whose stored bytes are still the recorded ones (size and sha256): a
        # piece lost or damaged since is made again, never joined into the result.
        store = self.ctx.store
        return {i: a for i, a in pieces.items() if a.key and store.matches(a.key, a.size, a.sha256)}

    @contextmanager
    def piece(self, index: int, file: str) -> Iterator[Written]:
        with self.ctx.artifact(f"{self.name}/{index:04d}-{file}") as written:
            yield written
        if self.ctx.input_key is not None:
            run_db(outcomes.record_checkpoint, step_id=self.ctx.step_id, name=self.name,
                   piece=index, input_key=self.ctx.input_key, attempt=self.ctx.attempt,
                   artifact=written.artifact.model_dump(mode="json"))  # fmt: skip
