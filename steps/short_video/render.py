"""render_scene (queue `gpu`): one scene to an H.264 MP4 segment, atomically in place.

One task per scene. Frames come from `steps.short_video.frames` (NumPy, or torch on CUDA when
available); PyAV encodes them with libx264, single-threaded by default: scenes already run
in parallel, one per worker process. Same scene, same bytes.

The scene is encoded in chunks of CHUNK_S seconds, each its own closed group of pictures,
recorded as a checkpoint once finished: a retry after a crash keeps the finished chunks and
encodes only the rest. The chunks are then joined without re-encoding (their packets
copied, timestamps shifted), so the segment is the same bytes whether it was rendered in
one attempt or several.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av

from reelflow.settings import get_settings
from steps import RetryPolicy, StepContext, step
from steps.short_video.frames import ScenePainter, torch_device
from steps.short_video.models import FrameParams, Scene, Segment, font_version

#: Seconds of video per checkpointed chunk.
CHUNK_S = 2


def encode_frames(
    painter: ScenePainter,
    path: str,
    frames: range,
    tick: Callable[[int], None] = lambda done: None,
) -> int:
    """Encode frames `frames` of the scene to `path` (an MP4 of its own, starting with a
    keyframe); returns how many were encoded. `tick(i)` runs before each frame."""
    settings = get_settings()
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=painter.fps)
        stream.width, stream.height = painter.w, painter.h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {
            "preset": settings.x264_preset,
            "crf": "21",
            "threads": str(settings.x264_threads),
            "tune": "stillimage",
            # Macroblock-tree rate control reads memory the encoder never initialises, so
            # the same frames came out as different bytes from run to run. Without it the
            # output is repeatable, and a resumed run's video matches a clean run's.
            "x264-params": "mbtree=0",
        }
        for pts, index in enumerate(frames):
            tick(index)
            frame = av.VideoFrame.from_ndarray(painter.frame(index), format="rgba")
            frame.pts = pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return len(frames)


def encode_scene(painter: ScenePainter, path: str, tick: Callable[[], None] = lambda: None) -> int:
    """Write every frame of the scene to `path` in one piece; returns the frame count."""
    return encode_frames(
        painter, path, range(painter.frames), lambda i: tick() if i % painter.fps == 0 else None
    )


def join_chunks(paths: list[Path], out: Path, fps: int) -> None:
    """The chunks, end to end, as one MP4: packets copied, timestamps shifted."""
    with av.open(str(out), "w", format="mp4") as target:
        template: Any = None
        stream: Any = None
        offset = 0
        for path in paths:
            with av.open(str(path)) as source:
                src = source.streams.video[0]
                assert src.time_base is not None
                if stream is None:
                    template = src
                    stream = target.add_stream_from_template(template)
                frames = 0
                for packet in source.demux(src):
                    if packet.dts is None or packet.pts is None:
                        continue
                    shift = round(offset / fps / src.time_base)
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = stream
                    target.mux(packet)
                    frames += 1
                offset += frames


def chunk_ranges(frames: int, per_chunk: int) -> list[range]:
    """The scene's frames in chunks of `per_chunk`, the last taking a remainder shorter than
    half a chunk (a chunk of a frame or two encodes badly and joins worse)."""
    count = max(1, math.ceil(frames / per_chunk))
    if count > 1 and frames - (count - 1) * per_chunk < per_chunk // 2:
        count -= 1
    return [range(i * per_chunk, frames if i == count - 1 else (i + 1) * per_chunk)
            for i in range(count)]  # fmt: skip


@step(queue="gpu", retry=RetryPolicy(max_attempts=3, backoff_base=2.0), time_limit=1800,
      key_extra=font_version)  # fmt: skip
def render_scene(ctx: StepContext, params: FrameParams, item: Scene) -> Segment:
    device = torch_device()
    image = ctx.local(item.background) if item.background is not None else None
    painter = ScenePainter(item, params.width, params.height, params.fps, device, image)
    per_chunk = CHUNK_S * params.fps
    pieces = chunk_ranges(painter.frames, per_chunk)
    chunks = len(pieces)
    checkpoint = ctx.checkpoint("chunks")
    kept = checkpoint.done()
    rendered = 0

    def tick(index: int) -> None:
        if index % params.fps == 0:
            ctx.check_cancelled()  # once a second of video: a cancel stops it here
            ctx.progress(index, painter.frames)

    paths: list[Path] = []
    for chunk, frames in enumerate(pieces):
        if chunk in kept:
            paths.append(ctx.local(kept[chunk]))
            continue
        with checkpoint.piece(chunk, "chunk.mp4") as written:
            rendered += encode_frames(painter, str(written.path), frames, tick)
        paths.append(ctx.local(written.artifact))
    ctx.progress(painter.frames, painter.frames)
    with ctx.artifact("segment.mp4") as segment:
        join_chunks(paths, segment.path, params.fps)
    return Segment(
        index=item.index,
        frames=painter.frames,
        fps=params.fps,
        width=params.width,
        height=params.height,
        backend="torch-cuda" if device is not None else "numpy",
        video=segment.artifact,
        frames_rendered=rendered,
        chunks=chunks,
        chunks_kept=len(kept),
    )
