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
import os
import shutil
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reelflow.errors import ConfigError
from reelflow.settings import Settings, get_settings


class ArtifactMissing(Exception):
    """No artifact under that key."""


class ArtifactStore(ABC):
    """The small interface steps, the API and pruning use; two implementations."""

    url: str

    @abstractmethod
    def location(self, key: str) -> str:
        """What an artifact records as where it is: a file path, or an s3:// URL."""

    @abstractmethod
    @contextmanager
    def writer(self, key: str, scratch: Path) -> Iterator[Path]:
        """A temporary local path to write; once the block succeeds it is placed at `key`
        atomically. A failed block leaves nothing under `key` (and no temporary file)."""

    @abstractmethod
    def local_copy(self, key: str, scratch: Path) -> Path:
        """A local file with the artifact's bytes: the file itself when local, a download
        into `scratch` otherwise."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The artifact's size in bytes, or None when there is none."""

    @abstractmethod
    async def open_stream(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        """The artifact's size and its bytes in chunks, from one read (ArtifactMissing when
        there is none): the size always belongs to the bytes that follow."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder: `<run_id>/`)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every artifact under `prefix`; returns how many were deleted."""


def _scratch_name(key: str) -> str:
    return f".tmp-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}-{Path(key).name}"


class LocalStore(ArtifactStore):
    """A folder (ARTIFACT_ROOT): a shared volume in a single-host deployment."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        """The file of `key`; keys that resolve outside the root are refused."""
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise ArtifactMissing(key)
        return target

    def location(self, key: str) -> str:
        return str(self.path(key))

    @contextmanager
    def writer(self, key: str, scratch: Path) -> Iterator[Path]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Beside the final file (one filesystem, so one rename); the extension stays last,
        # since encoders pick the container format from it.
        tmp = final.with_name(_scratch_name(key))
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def local_copy(self, key: str, scratch: Path) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise ArtifactMissing(key)
        return path

    def size(self, key: str) -> int | None:
        try:
            path = self.path(key)
        except ArtifactMissing:
            return None
        return path.stat().st_size if path.is_file() else None

    async def open_stream(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        fh = self.local_copy(key, Path()).open("rb")  # an open file survives a replace
        size = os.fstat(fh.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            with fh:
                while chunk := fh.read(1 << 20):
                    yield chunk

        return size, chunks()

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in folder.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> int:
        found = len(self.keys(prefix))
        shutil.rmtree(self.root / prefix, ignore_errors=True)
        return found


class S3Store(ArtifactStore):
    """S3 or anything that speaks its API (MinIO, Ceph, R2, moto), through obstore."""

    def __init__(self, url: str, settings: Settings) -> None:
        try:
            from obstore.store import S3Store as _Store
        except ImportError as exc:  # pragma: no cover - the `s3` extra is not installed
            raise ConfigError("ARTIFACT_URL is s3:// but obstore is not installed") from exc
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"ARTIFACT_URL {url!r} is not s3://bucket[/prefix]")
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        config: dict[str, Any] = {"region": settings.aws_region}
        if settings.aws_endpoint_url:
            config["endpoint"] = settings.aws_endpoint_url
            config["virtual_hosted_style_request"] = False
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            config["access_key_id"] = settings.aws_access_key_id
            config["secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
        client = {"allow_http": (settings.aws_endpoint_url or "").startswith("http://")}
        self.store = _Store(
            self.bucket,
            prefix=self.prefix or None,
            config=config,  # type: ignore[arg-type]  # a TypedDict built up key by key
            client_options=client,  # type: ignore[arg-type]
        )

    def location(self, key: str) -> str:
        return f"{self.url}/{key}"

    @contextmanager
    def writer(self, key: str, scratch: Path) -> Iterator[Path]:
        import obstore

        scratch.mkdir(parents=True, exist_ok=True)
        tmp = scratch / _scratch_name(key)
        try:
            yield tmp
            obstore.put(self.store, key, tmp)  # visible only once whole
        finally:
            tmp.unlink(missing_ok=True)

    def local_copy(self, key: str, scratch: Path) -> Path:
        import obstore

        target = scratch / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(_scratch_name(key))
        try:
            result = obstore.get(self.store, key)
        except FileNotFoundError as exc:
            raise ArtifactMissing(key) from exc
        try:
            with tmp.open("wb") as fh:
                for chunk in result.stream():
                    fh.write(chunk)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def size(self, key: str) -> int | None:
        import obstore

        try:
            return int(obstore.head(self.store, key)["size"])
        except FileNotFoundError:
            return None

    async def open_stream(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        import obstore

        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError as exc:
            raise ArtifactMissing(key) from exc

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.stream():
                yield bytes(chunk)

        return int(result.meta["size"]), chunks()

    def keys(self, prefix: str) -> list[str]:
        import obstore

        return sorted(
            str(meta["path"])
            for batch in obstore.list(self.store, prefix=prefix.rstrip("/") + "/")
            for meta in batch
        )

    def delete_prefix(self, prefix: str) -> int:
        import obstore

        found = self.keys(prefix)
        for start in range(0, len(found), 1000):
            obstore.delete(self.store, found[start : start + 1000])
        return len(found)


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
