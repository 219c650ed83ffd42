"""Taking an upload in: its type sniffed from its bytes (never its name or the client's
word) and the whole file decoded as that type, then its bytes placed once per content in
the artifact store and its row written.

Nothing is half-written: a refused upload never reaches the store; an accepted one is
placed atomically (the store's writer) before its row is inserted, under the content's
lock, and taken out again if the insert fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av
import filetype
import structlog
from PIL import Image, ImageSequence

from db import repository as repo
from db.engine import get_engine
from db.records import AssetKind, AssetRecord
from reelflow.errors import UnsupportedMediaType
from reelflow.settings import get_settings
from reelflow.storage import ArtifactStore, artifact_store

log = structlog.get_logger("reelflow.assets")

#: How many leading bytes the sniffer reads (filetype's own window).
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Media:
    kind: AssetKind
    media_type: str
    extension: str


#: What reelflow takes, by the media type `filetype` reads from the bytes.
ACCEPTED: dict[str, Media] = {
    m.media_type: m
    for m in (
        Media("image", "image/png", "png"),
        Media("image", "image/apng", "png"),
        Media("image", "image/jpeg", "jpg"),
        Media("image", "image/webp", "webp"),
        Media("image", "image/gif", "gif"),
        Media("audio", "audio/x-wav", "wav"),
        Media("audio", "audio/mpeg", "mp3"),
        Media("audio", "audio/ogg", "ogg"),
        Media("audio", "audio/x-flac", "flac"),
        Media("audio", "audio/mp4", "m4a"),
        Media("audio", "audio/aac", "aac"),
    )
}


def sniff(head: bytes) -> Media:
    """The media the first bytes of a file say it is; UnsupportedMediaType otherwise."""
    found = filetype.guess(head[:SNIFF_BYTES]) if head else None
    media = ACCEPTED.get(found.mime) if found else None
    if media is None:
        seen = f"{found.mime} " if found else "of no type we know "
        raise UnsupportedMediaType(
            f"the file is {seen}by its bytes; uploads are images (png, jpeg, webp, gif) or"
            " audio (wav, mp3, ogg, flac, m4a, aac)"
        )
    return media


#: The most pixels an uploaded image may have (8K by 5K): a "decompression bomb" of a few
#: kilobytes would otherwise cost the worker that decodes it gigabytes.
MAX_PIXELS = 40_000_000


def check_decodes(path: Path, media: Media) -> None:
    """The file decodes whole as the media its first bytes claim (an image within
    MAX_PIXELS; audio with sound in it); UnsupportedMediaType otherwise. So a run never
    fails at render time on an upload the API took."""
    problem = None
    try:
        if media.kind == "image":
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    problem = f"{image.width}x{image.height} is over {MAX_PIXELS:,} pixels"
                else:
                    for frame in ImageSequence.Iterator(image):  # every frame of an animation
                        frame.load()
        else:
            with av.open(str(path)) as source:
                if not source.streams.audio:
                    problem = "it has no audio stream"
                elif sum(frame.samples for frame in source.decode(audio=0)) == 0:
                    problem = "it has no sound in it"
    except Exception as exc:  # a decoder's any complaint (struct.error, IndexError...)
        problem = (str(exc) or type(exc).__name__).replace(f" '{path}'", "").replace(str(path), "")
    if problem is not None:
        raise UnsupportedMediaType(
            f"the file starts as {media.media_type} but does not decode as one: {problem[:200]}"
        )


@dataclass(frozen=True)
class Upload:
    """An upload received whole into a local file (not in the store yet)."""

    path: Path
    size: int
    sha256: str
    media: Media


def upload_folder() -> Path:
    """Where uploads are received before they are placed (in SCRATCH_DIR)."""
    folder = get_settings().scratch_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def admit(upload: Upload) -> tuple[AssetRecord, bool]:
    """The asset of these bytes: (it, True) when this upload stored them, (the existing
    row, False) when they were uploaded before. The file at `upload.path` is consumed."""
    await asyncio.to_thread(check_decodes, upload.path, upload.media)
    store = artifact_store()
    key = repo.asset_key(upload.sha256, upload.media.extension)
    asset = AssetRecord(
        id=uuid.uuid4(), sha256=upload.sha256, kind=upload.media.kind, size=upload.size,
        media_type=upload.media.media_type, key=key, created_at=datetime.now(UTC),
    )  # fmt: skip
    async with get_engine().begin() as conn:
        await repo.lock_content(conn, sha256=upload.sha256)
        found = await repo.find_by_sha(conn, sha256=upload.sha256, hold=True)
        if found is not None:
            if await asyncio.to_thread(store.size, found.key) is None:
                await asyncio.to_thread(_place, store, found.key, upload)  # lost: put back
            return found, False
        await asyncio.to_thread(_place, store, key, upload)
        try:
            stored, created = await repo.add_asset(conn, asset=asset)
        except BaseException:
            await asyncio.to_thread(_take_out, store, key)
            raise
    log.info("asset_stored", asset_id=str(stored.id), kind=stored.kind, size=stored.size)
    return stored, created


def _place(store: ArtifactStore, key: str, upload: Upload) -> None:
    """Put the bytes at `key`, atomically; bytes already there (a pruned asset's file not
    deleted yet) are kept when they match."""
    if store.matches(key, upload.size, upload.sha256):
        return
    with store.writer(key, upload.path.parent) as tmp:
        shutil.move(upload.path, tmp)


def _take_out(store: ArtifactStore, key: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the insert's error is the news
        store.delete_keys([key])
