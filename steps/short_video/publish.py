"""publish: the finished video, its thumbnail and a metadata JSON, to the publish store
(PUBLISH_DIR, or object storage beside S3 artifacts).

Idempotent: the destination is named by the run, each file is placed whole (a rename, or
one PUT), so a rerun replaces them and never leaves a half-copied file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from reelflow.storage import ArtifactStore, publish_store
from steps import Artifact, StepContext, file_digest, step
from steps.short_video.models import Published, Script, VideoOut


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "video"


def _place(store: ArtifactStore, source: Path, key: str, scratch: Path) -> Artifact:
    with store.writer(key, scratch) as tmp:
        shutil.copyfile(source, tmp)
        size, sha256 = file_digest(tmp)
    return Artifact(path=store.location(key), key=key, size=size, sha256=sha256)


@step(cache=False)  # it has side effects: its result is never reused
def publish(ctx: StepContext, write_script: Script, compose_video: VideoOut) -> Published:
    store = publish_store()
    folder = f"{slug(write_script.title)}-{str(ctx.run_id)[:8]}"
    video = _place(store, ctx.local(compose_video.video), f"{folder}/video.mp4", ctx.scratch)
    thumbnail = _place(
        store, ctx.local(compose_video.thumbnail), f"{folder}/thumbnail.png", ctx.scratch
    )
    metadata = {
        "run_id": str(ctx.run_id),
        "title": write_script.title,
        "hashtags": write_script.hashtags,
        "trend_id": write_script.trend_id,
        "duration_s": compose_video.duration_s,
        "width": compose_video.width,
        "height": compose_video.height,
        "fps": compose_video.fps,
        "sha256": video.sha256,
        "size": video.size,
    }
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    meta_file = ctx.scratch / "metadata.json"
    meta_file.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", "utf-8")
    meta = _place(store, meta_file, f"{folder}/metadata.json", ctx.scratch)
    return Published(
        directory=store.location(folder), video=video, thumbnail=thumbnail, metadata=meta
    )
