"""Where artifacts live: a local folder (the default) or S3-compatible object storage.

Steps write through `writer(key)` and read through `local_copy(key)`, so the same step code
runs with a shared disk or with nothing shared but a bucket. Keys are deterministic
(`<run_id>/<step_key>/<name>`): a rerun overwrites, it never adds. No reader ever sees half
an object: the local store renames a finished file into place; the S3 store uploads a
finished file in one PUT (or one completed multipart upload), which S3 makes visible only
whole, so the final key holds the old object or the new one, never a part.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from functools import lru_cache
from pathlib import Path

from reelflow.settings import Settings, get_settings
from reelflow.storage.base import ArtifactMissing, ArtifactStore, Opened
from reelflow.storage.local import LocalStore
from reelflow.storage.s3 import S3Store

__all__ = [
    "ArtifactMissing",
    "ArtifactStore",
    "LocalStore",
    "Opened",
    "S3Store",
    "artifact_store",
    "open_store",
    "publish_store",
    "sweep_scratch",
]


def sweep_scratch(scratch: Path, *, older_than_s: float) -> int:
    """Delete what killed attempts left in a worker's scratch folder (a finished attempt
    removes its own): entries untouched for `older_than_s`, longer than any step runs."""
    if not scratch.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for run_dir in scratch.iterdir():
        for entry in run_dir.iterdir() if run_dir.is_dir() else []:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty
    return removed


def open_store(url: str | None, local: Path, settings: Settings) -> ArtifactStore:
    """`url` when set (s3://...), else the local folder."""
    if url:
        return S3Store(url, settings)
    return LocalStore(local)


def _stores() -> tuple[ArtifactStore, ArtifactStore]:
    settings = get_settings()
    # Settings are re-read when the environment changes (tests, `reelflow dev`): one pair
    # of stores per distinct configuration, each with its own client and connection pool.
    return _stores_for(settings.model_dump_json(include=_STORE_FIELDS))


_STORE_FIELDS = {
    "artifact_url", "publish_url", "artifact_root", "publish_dir",
    "aws_endpoint_url", "aws_region", "aws_access_key_id", "aws_secret_access_key",
}  # fmt: skip


@lru_cache(maxsize=4)
def _stores_for(_config: str) -> tuple[ArtifactStore, ArtifactStore]:
    settings = get_settings()
    artifacts = open_store(settings.artifact_url, settings.artifact_root, settings)
    publish_url = settings.publish_url or (
        f"{settings.artifact_url.rstrip('/')}/published" if settings.artifact_url else None
    )
    return artifacts, open_store(publish_url, settings.publish_dir, settings)


def artifact_store() -> ArtifactStore:
    """Where steps keep their artifacts (ARTIFACT_URL, or ARTIFACT_ROOT)."""
    return _stores()[0]


def publish_store() -> ArtifactStore:
    """Where `publish` puts finished videos (PUBLISH_URL; else beside S3 artifacts under
    `published/`; else PUBLISH_DIR)."""
    return _stores()[1]
