"""Pure parts of the short_video stages: trend providers, the script writer, frames."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from reelflow.errors import PermanentStepError
from steps.frames import ScenePainter
from steps.script import STYLES, TemplateWriter, scene_count
from steps.trends import BuiltinProvider, CsvUrlProvider, FileProvider, choose, provider_for
from steps.video_models import Scene, ShortVideoParams

CSV = "id,title,score,hashtags,summary,points\nx1,Robots learn to fold laundry,50,#ai #home,Folding,Step one|Step two\n"  # noqa: E501


def test_builtin_trends_and_choice() -> None:
    trends = BuiltinProvider().load()
    assert len(trends) >= 5 and all(t.hashtags for t in trends)
    top = choose(trends, ShortVideoParams())
    assert top.score == max(t.score for t in trends)
    assert choose(trends, ShortVideoParams(topic="bees")).id == "urban-bees"
    assert choose(trends, ShortVideoParams(trend_id="solar-roads")).id == "solar-roads"
    with pytest.raises(PermanentStepError):
        choose(trends, ShortVideoParams(trend_id="nope"))
    with pytest.raises(ValueError):
        ShortVideoParams(topic="a", trend_id="b")


def test_file_and_url_providers(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(CSV)
    json_path = tmp_path / "t.json"
    json_path.write_text(json.dumps([{"id": "j", "title": "J", "score": 1, "hashtags": ["#j"]}]))
    assert FileProvider(csv_path).load()[0].points == ["Step one", "Step two"]
    assert FileProvider(json_path).load()[0].id == "j"
    assert isinstance(provider_for(str(csv_path)), FileProvider)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(CSV.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/trends.csv"
        provider = provider_for(url)
        assert isinstance(provider, CsvUrlProvider)
        assert provider.load()[0].hashtags == ["#ai", "#home"]
    finally:
        server.shutdown()


@pytest.mark.parametrize("length", [15, 30, 45, 60])
def test_script_is_deterministic_and_exactly_timed(length: int) -> None:
    trend = BuiltinProvider().load()[0]
    params = ShortVideoParams(length_seconds=length, fps=30)
    script = TemplateWriter().write(trend, params)
    assert script == TemplateWriter().write(trend, params)
    assert 3 <= len(script.scenes) == scene_count(length) <= 8
    frames = [round(s.duration_s * 30) for s in script.scenes]
    assert sum(frames) == length * 30
    assert all(s.caption and s.narration for s in script.scenes)


def test_frames_animate_and_show_the_caption() -> None:
    scene = Scene(
        index=0, narration="n", caption="Hello there", start_s=0, duration_s=2, style=STYLES[0]
    )
    painter = ScenePainter(scene, 360, 640, 10)
    first, later = painter.frame(0), painter.frame(15)
    assert first.shape == (640, 360, 4) and first.dtype == np.uint8
    assert not np.array_equal(first, later)
    y, x = painter.cy, painter.cx
    caption = later[y : y + painter.ink.shape[0], x : x + painter.ink.shape[1], :3]
    assert caption.max() >= 250  # white ink once faded in
    assert np.array_equal(painter.frame(7), ScenePainter(scene, 360, 640, 10).frame(7))


def test_torch_backend_matches_numpy_within_rounding() -> None:
    torch = pytest.importorskip("torch")
    scene = Scene(
        index=1,
        narration="n",
        caption="Same on every device",
        start_s=0,
        duration_s=1,
        style=STYLES[2],
    )
    cpu = ScenePainter(scene, 360, 640, 10)
    accelerated = ScenePainter(scene, 360, 640, 10, device=torch.device("cpu"))
    for index in (0, 5, 9):
        diff = np.abs(cpu.frame(index).astype(int) - accelerated.frame(index).astype(int))
        assert diff.max() <= 2, diff.max()


def test_a_render_stops_when_its_run_is_cancelled(tmp_path: Path) -> None:
    import uuid

    from reelflow.errors import StepCancelled
    from steps.models import StepContext
    from steps.render import encode_scene

    stop = {"now": False}
    ctx = StepContext(
        run_id=uuid.uuid4(),
        key="render_scene[0]",
        attempt=1,
        artifact_root=tmp_path,
        stop_requested=lambda: stop["now"],
    )
    ctx.check_cancelled()  # nothing asked yet
    scene = Scene(
        index=0, narration="n", caption="Stop me", start_s=0, duration_s=3, style=STYLES[0]
    )
    painter = ScenePainter(scene, 160, 288, 10)
    ticks = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 2:
            stop["now"] = True
        ctx.check_cancelled()

    with pytest.raises(StepCancelled):
        encode_scene(painter, str(tmp_path / "s.mp4"), tick=tick)
    assert len(ticks) == 2  # stopped at the check where it was asked, not at the end
