"""S3-compatible object storage (ARTIFACT_URL=s3://bucket/prefix), through obstore."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reelflow.errors import ConfigError
from reelflow.settings import Settings
from reelflow.storage.base import ArtifactMissing, ArtifactStore, Opened, temporary_name


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
    def writer(
        self, key: str, scratch: Path, resolve: Callable[[Path], str] | None = None
    ) -> Iterator[Path]:
        import obstore

        scratch.mkdir(parents=True, exist_ok=True)
        tmp = scratch / temporary_name(key)
        try:
            yield tmp
            final = resolve(tmp) if resolve is not None else key
            obstore.put(self.store, final, tmp)  # visible only once whole
        finally:
            tmp.unlink(missing_ok=True)

    def matches(self, key: str, size: int, sha256: str) -> bool | None:
        import obstore

        there = self.size(key)
        if there is None:
            return None
        if there != size:
            return False
        digest = hashlib.sha256()
        for chunk in obstore.get(self.store, key).stream():
            digest.update(chunk)
        return digest.hexdigest() == sha256

    def local_copy(self, key: str, scratch: Path) -> Path:
        import obstore

        target = scratch / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(temporary_name(key))
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

    async def open_stream(self, key: str, span: tuple[int, int] | None = None) -> Opened:
        import obstore

        try:
            options: Any = {"range": span} if span else None
            result = await obstore.get_async(self.store, key, options=options)
        except FileNotFoundError as exc:
            raise ArtifactMissing(key) from exc

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.stream():
                yield bytes(chunk)

        start, end = result.range
        return Opened(int(result.meta["size"]), start, end, chunks())

    def keys(self, prefix: str) -> list[str]:
        import obstore

        return sorted(
            str(meta["path"])
            for batch in obstore.list(self.store, prefix=prefix.rstrip("/") + "/")
            for meta in batch
        )

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_keys(self.keys(prefix))

    def delete_keys(self, keys: list[str]) -> int:
        import obstore

        for start in range(0, len(keys), 1000):
            obstore.delete(self.store, keys[start : start + 1000])
        return len(keys)
