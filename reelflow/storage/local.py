"""The local folder store (ARTIFACT_ROOT): a shared volume in a single-host deployment."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reelflow.storage.base import (
    ArtifactMissing,
    ArtifactStore,
    Opened,
    file_sha256,
    temporary_name,
)


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
    def writer(
        self, key: str, scratch: Path, resolve: Callable[[Path], str] | None = None
    ) -> Iterator[Path]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Beside the final file (one filesystem, so one rename); the extension stays last,
        # since encoders pick the container format from it.
        tmp = final.with_name(temporary_name(key))
        try:
            yield tmp
            if resolve is not None:
                final = self.path(resolve(tmp))
                final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def matches(self, key: str, size: int, sha256: str) -> bool | None:
        try:
            path = self.path(key)
        except ArtifactMissing:
            return None
        if not path.is_file():
            return None
        return path.stat().st_size == size and file_sha256(path) == sha256

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

    async def open_stream(self, key: str, span: tuple[int, int] | None = None) -> Opened:
        fh = self.local_copy(key, Path()).open("rb")  # an open file survives a replace
        size = os.fstat(fh.fileno()).st_size
        start, end = span or (0, size)
        fh.seek(start)

        async def chunks() -> AsyncIterator[bytes]:
            left = end - start
            with fh:
                while left > 0 and (chunk := fh.read(min(left, 1 << 20))):
                    left -= len(chunk)
                    yield chunk

        return Opened(size, start, end, chunks())

    def keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in folder.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> int:
        found = len(self.keys(prefix))
        shutil.rmtree(self.root / prefix, ignore_errors=True)
        return found

    def delete_keys(self, keys: list[str]) -> int:
        deleted = 0
        for key in keys:
            try:
                path = self.path(key)
            except ArtifactMissing:
                continue
            if path.is_file():
                path.unlink(missing_ok=True)
                deleted += 1
                with contextlib.suppress(OSError):  # folders the key left empty
                    path.parent.rmdir()
                    path.parent.parent.rmdir()
        return deleted
