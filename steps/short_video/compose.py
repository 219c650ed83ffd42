"""compose_video: the segments, in scene order, with the voice track, as one MP4; and
publish: the finished video, its thumbnail and a metadata JSON, to the publish store.

Segments are remuxed (their H.264 packets copied, timestamps shifted), not re-encoded:
they come from the same encoder settings, so this is exact and takes a moment. The voice
is encoded to AAC. A PNG thumbnail is taken from the middle of the first scene.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from scipy.signal import resample_poly

from reelflow.errors import PermanentStepError
from reelflow.storage import ArtifactStore, publish_store
from steps import Artifact, StepContext, file_digest, step
from steps.short_video.models import (
    FrameParams,
    Published,
    Script,
    Segment,
    VideoOut,
    VoiceOut,
)

AUDIO_RATE = 48000
MAX_PEAK_DBTP = -1.0


def _video_packets(paths: list[Path], out_stream: Any) -> list[tuple[float, Any]]:
    packets, offset = [], 0.0
    for path in paths:
        with av.open(str(path)) as source:
            stream = source.streams.video[0]
            tb = stream.time_base
            assert tb is not None
            shift = round(offset / tb)
            for packet in source.demux(stream):
                if packet.dts is None or packet.pts is None:
                    continue
                packet.pts += shift
                packet.dts += shift
                packet.stream = out_stream
                packet.time_base = tb
                packets.append((float(packet.dts * tb), packet))
            offset += _duration(stream)
    return packets


def _duration(stream: Any) -> float:
    """Seconds of video in a segment, from its frame count and rate."""
    return float(stream.frames / stream.average_rate) if stream.frames else 0.0


def _audio_packets(
    wav: Path, out_stream: Any, duration: float, gain: float = 1.0
) -> list[tuple[float, Any]]:
    packets = []
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
    with av.open(str(wav)) as source:
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                if gain != 1.0:
                    scaled = (converted.to_ndarray() * np.float32(gain)).astype(np.float32)
                    again = av.AudioFrame.from_ndarray(scaled, format="fltp", layout="mono")
                    again.sample_rate, again.pts = converted.sample_rate, converted.pts
                    converted = again
                for packet in out_stream.encode(converted):
                    packets.append(packet)
        for converted in resampler.resample(None):
            packets.extend(out_stream.encode(converted))
    packets.extend(out_stream.encode(None))
    tb = out_stream.time_base or Fraction(1, AUDIO_RATE)
    return [(float((p.dts or 0) * tb), p) for p in packets if float((p.pts or 0) * tb) < duration]


def encoded_true_peak(video: Path) -> float:
    """The true peak (dBTP) of a video's audio as a player decodes it."""
    with av.open(str(video)) as source:
        chunks = [f.to_ndarray().reshape(-1) for f in source.decode(audio=0)]
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(1, np.float32)
    peak = float(np.max(np.abs(resample_poly(samples.astype(np.float64), 4, 1))))
    return 20 * math.log10(peak) if peak > 0 else -120.0


def compose(segments: list[Path], wav: Path, out: Path, thumb: Path) -> float:
    """Write the video; returns the true peak of its encoded audio. AAC can overshoot the
    mix's peaks: when the encoded peak passes -1 dBTP, the audio is encoded again, lower by
    as much as it passed."""
    gain = 1.0
    for _ in range(3):
        _compose(segments, wav, out, thumb, gain)
        peak = encoded_true_peak(out)
        if peak <= MAX_PEAK_DBTP:
            break
        gain *= 10 ** ((MAX_PEAK_DBTP - 0.2 - peak) / 20)
    return peak


def _compose(segments: list[Path], wav: Path, out: Path, thumb: Path, gain: float) -> None:
    with av.open(str(segments[0])) as first:
        template = first.streams.video[0]
        middle = (template.frames or 1) // 2  # the caption has faded in by then
        for index, frame in enumerate(first.decode(template)):  # noqa: B007
            if index >= middle:
                break
        frame.to_image().save(thumb, format="PNG")  # type: ignore[no-untyped-call]
        first.seek(0)
        with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as target:
            video = target.add_stream_from_template(template)
            audio = target.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            audio.bit_rate = 128_000
            duration = 0.0
            for path in segments:
                with av.open(str(path)) as source:
                    duration += _duration(source.streams.video[0])
            merged = _video_packets(segments, video) + _audio_packets(wav, audio, duration, gain)
            merged.sort(key=lambda pair: pair[0])
            for _, packet in merged:
                target.mux(packet)


@step()
def compose_video(
    ctx: StepContext,
    params: FrameParams,
    write_script: Script,
    synthesize_voice: VoiceOut,
    render_scene: list[Segment],
) -> VideoOut:
    ordered = sorted(render_scene, key=lambda s: s.index)
    if [s.index for s in ordered] != [scene.index for scene in write_script.scenes]:
        raise PermanentStepError("the rendered segments do not match the script's scenes")
    with ctx.artifact("video.mp4") as video, ctx.artifact("thumbnail.png") as thumb:
        peak = compose(
            [ctx.local(s.video) for s in ordered],
            ctx.local(synthesize_voice.audio),
            video.path,
            thumb.path,
        )
    frames = sum(s.frames for s in ordered)
    return VideoOut(
        duration_s=frames / params.fps,
        width=params.width,
        height=params.height,
        fps=params.fps,
        video=video.artifact,
        thumbnail=thumb.artifact,
        true_peak_dbtp=round(peak, 2),
    )


# --- publish: PUBLISH_DIR, or object storage beside S3 artifacts. Idempotent: the
# destination is named by the run, each file is placed whole (a rename, or one PUT), so
# a rerun replaces them and never leaves a half-copied file.


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
