"""publish: the finished video, its thumbnail and a metadata JSON, into PUBLISH_DIR.

Idempotent: the destination is named by the run, files are written to a temporary name
and renamed, so a rerun replaces them and never leaves a half-copied file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from reelflow.settings import get_settings
from steps.engine.context import Artifact, StepContext, atomic_file
from steps.engine.task import step
from steps.short_video.models import Published, Script, ShortVideoParams, VideoOut


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "video"


def _place(source: Path, target: Path) -> Artifact:
    with atomic_file(target) as tmp:
        shutil.copyfile(source, tmp)
    return Artifact.of(target)


@step()
def publish(
    ctx: StepContext, params: ShortVideoParams, write_script: Script, compose_video: VideoOut
) -> Published:
    folder = get_settings().publish_dir / f"{slug(write_script.title)}-{str(ctx.run_id)[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    video = _place(Path(compose_video.video.path), folder / "video.mp4")
    thumbnail = _place(Path(compose_video.thumbnail.path), folder / "thumbnail.png")
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
    meta_path = folder / "metadata.json"
    with atomic_file(meta_path) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return Published(
        directory=str(folder), video=video, thumbnail=thumbnail, metadata=Artifact.of(meta_path)
    )
