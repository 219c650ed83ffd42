"""The artifact store's interface: what steps, the API and pruning may ask of a store."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reelflow.errors import ReelflowError


class ArtifactMissing(ReelflowError):
    """No artifact under that key."""

    code = "artifact_missing"


@dataclass(frozen=True)
class Opened:
    """Bytes start..end (exclusive) of an artifact of `size` bytes, as they stream."""

    size: int
    start: int
    end: int
    chunks: AsyncIterator[bytes]


class ArtifactStore(ABC):
    """The small interface steps, the API and pruning use; two implementations."""

    url: str

    @abstractmethod
    def location(self, key: str) -> str:
        """What an artifact records as where it is: a file path, or an s3:// URL."""

    @abstractmethod
    @contextmanager
    def writer(
        self, key: str, scratch: Path, resolve: Callable[[Path], str] | None = None
    ) -> Iterator[Path]:
        """A temporary local path to write; once the block succeeds it is placed at `key`
        (or at the key `resolve(temporary path)` answers, decided once the bytes are
        known) atomically. A failed block leaves nothing (and no temporary file)."""

    @abstractmethod
    def matches(self, key: str, size: int, sha256: str) -> bool | None:
        """Whether the artifact at `key` has exactly these bytes; None when there is none."""

    @abstractmethod
    def local_copy(self, key: str, scratch: Path) -> Path:
        """A local file with the artifact's bytes: the file itself when local, a download
        into `scratch` otherwise."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The artifact's size in bytes, or None when there is none."""

    @abstractmethod
    async def open_stream(self, key: str, span: tuple[int, int] | None = None) -> Opened:
        """The artifact's bytes (`span`: start, end exclusive) in chunks, with its size,
        from one read (ArtifactMissing when there is none)."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder: `<run_id>/`)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every artifact under `prefix`; returns how many were deleted."""

    @abstractmethod
    def delete_keys(self, keys: list[str]) -> int:
        """Delete these artifacts (missing ones are no error); returns how many there were."""


def temporary_name(key: str) -> str:
    return f".tmp-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}-{Path(key).name}"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
