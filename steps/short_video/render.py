"""render_scene (queue `gpu`): one scene to an H.264 MP4 segment, atomically in place.

One task per scene. Frames come from `steps.short_video.frames` (NumPy, or torch on CUDA when
available); PyAV encodes them with libx264, single-threaded by default: scenes already run
in parallel, one per worker process. Same scene, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import av

from reelflow.settings import get_settings
from steps import RetryPolicy, StepContext, step
from steps.short_video.frames import ScenePainter, torch_device
from steps.short_video.models import FrameParams, Scene, Segment


def encode_scene(painter: ScenePainter, path: str, tick: Callable[[], None] = lambda: None) -> int:
    """Write every frame of the scene to `path`; returns the frame count."""
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
        for index in range(painter.frames):
            if index % painter.fps == 0:
                tick()  # once a second of video: stop early if the run was cancelled
            frame = av.VideoFrame.from_ndarray(painter.frame(index), format="rgba")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return painter.frames


@step(queue="gpu", retry=RetryPolicy(max_attempts=3, backoff_base=2.0), time_limit=1800)
def render_scene(ctx: StepContext, params: FrameParams, item: Scene) -> Segment:
    device = torch_device()
    painter = ScenePainter(item, params.width, params.height, params.fps, device=device)
    with ctx.artifact("segment.mp4") as segment:
        frames = encode_scene(painter, str(segment.path), tick=ctx.check_cancelled)
    return Segment(
        index=item.index,
        frames=frames,
        fps=params.fps,
        width=params.width,
        height=params.height,
        backend="torch-cuda" if device is not None else "numpy",
        video=segment.artifact,
    )
