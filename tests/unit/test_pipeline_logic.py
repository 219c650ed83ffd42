"""Pure parts of the short_video stages: trend providers, the script writer, frames."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from reelflow.errors import InvalidParams, PermanentStepError, TransientStepError
from steps.short_video.frames import ScenePainter
from steps.short_video.models import Scene, ShortVideoParams, TrendParams
from steps.short_video.script import STYLES, build_script
from steps.short_video.trends import (
    BuiltinProvider,
    CsvUrlProvider,
    FileProvider,
    choose,
    collect_trends,
    provider_for,
)
from tests.support import patched_environment
from workflows.definition.shipped import short_video_workflow

CSV = "id,title,score,hashtags,summary,points\nx1,Robots learn to fold laundry,50,#ai #home,Folding,Step one|Step two\n"  # noqa: E501


def test_builtin_trends_and_choice() -> None:
    trends = BuiltinProvider().load()
    assert len(trends) >= 5 and all(t.hashtags for t in trends)
    top = choose(trends, ShortVideoParams())
    assert top.score == max(t.score for t in trends)
    assert choose(trends, ShortVideoParams(topic="bees")).id == "urban-bees"
    assert choose(trends, ShortVideoParams(trend_id="solar-roads")).id == "solar-roads"
    with pytest.raises(PermanentStepError):  # a live feed's ids are checked here
        choose(trends, TrendParams(trend_id="nope"))
    with pytest.raises(InvalidParams, match="no trend has this id"):  # a local source's, at POST
        short_video_workflow.validate_params({"trend_id": "nope"})
    assert short_video_workflow.validate_params({"trend_id": "solar-roads"})
    with pytest.raises(ValueError):
        ShortVideoParams(topic="a", trend_id="b")


def test_a_feed_that_is_down_falls_back_to_the_bundled_trends(tmp_path: Path) -> None:
    """A run asking for a topic (or nothing) is served from the bundled list; one asking
    for a trend id only the feed has fails as before (transiently: it retries)."""
    with patched_environment({"TRENDS_SOURCE": "http://127.0.0.1:9/trends.csv"}):
        got = collect_trends(TrendParams(topic="volcanoes"))
        assert got.source.startswith("builtin (fallback") and got.chosen.title == "volcanoes"
        assert collect_trends(TrendParams()).chosen.id in {t.id for t in got.trends}
        with pytest.raises(TransientStepError):
            collect_trends(TrendParams(trend_id="x1"))
    broken = tmp_path / "broken.csv"
    broken.write_text("no,such,columns\n1,2,3\n")
    with patched_environment({"TRENDS_SOURCE": str(broken)}):
        assert collect_trends(TrendParams(topic="bees")).source.startswith("builtin (fallback")


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
    """The writer's lines, timed by the synthesizer, fill the length exactly."""
    from steps.short_video.models import ScriptParams
    from steps.short_video.writers import OfflineWriter

    trend = BuiltinProvider().load()[0]
    params = ScriptParams(length_seconds=length, fps=30)
    draft = OfflineWriter().draft(trend, length)
    script = build_script(draft, trend.id, trend.hashtags, params)
    again = OfflineWriter().draft(trend, length)
    assert script == build_script(again, trend.id, trend.hashtags, params)
    assert 3 <= len(script.scenes) <= 8
    frames = [round(s.duration_s * 30) for s in script.scenes]
    assert sum(frames) == length * 30
    assert all(s.caption and s.narration for s in script.scenes)
    assert script.scenes[-1].narration.startswith("That's")  # the outro is never cut


def test_frames_animate_and_show_the_caption() -> None:
    scene = Scene(index=0, narration="n", caption="Hello there", duration_s=2, style=STYLES[0])
    painter = ScenePainter(scene, 360, 640, 10)
    first, later = painter.frame(0), painter.frame(15)
    assert first.shape == (640, 360, 4) and first.dtype == np.uint8
    assert not np.array_equal(first, later)
    cap = painter.captions[0]
    caption = later[cap.y0 : cap.y0 + cap.ink.shape[0], cap.x0 : cap.x0 + cap.ink.shape[1], :3]
    assert caption.max() >= 250  # white ink once faded in
    assert np.array_equal(painter.frame(7), ScenePainter(scene, 360, 640, 10).frame(7))


def test_captions_follow_the_spoken_phrases() -> None:
    from steps.short_video.script import phrases_of

    narration = "Bees are back in town, and they brought friends. Nobody saw it coming!"
    phrases = phrases_of(narration, start_s=0.0, duration_s=6.0)  # times within the scene
    assert [p.text for p in phrases] == [
        "Bees are back in town,", "and they brought friends.", "Nobody saw it coming!"
    ]  # fmt: skip
    assert phrases[0].start_s == 0.0
    assert abs(phrases[-1].start_s + phrases[-1].duration_s - 6.0) < 1e-6  # the whole scene
    assert all(a.start_s + a.duration_s - b.start_s < 1e-6 for a, b in itertools.pairwise(phrases))
    scene = Scene(index=1, narration=narration, caption="Bees", duration_s=6.0,
                  style=STYLES[0], phrases=phrases)  # fmt: skip
    painter = ScenePainter(scene, 360, 640, 10)
    shown = [painter.caption_at(t / 10) for t in range(60)]
    assert shown[0] == 0 and shown[-1] == 2 and shown == sorted(shown)
    second = round(phrases[1].start_s * 10) + 5  # half a second into phrase two
    assert painter.caption_at(second / 10) == 1
    assert not np.array_equal(painter.frame(second - 6), painter.frame(second))  # new words


def test_the_voice_speaks_each_phrase_at_its_time() -> None:
    from steps.short_video.models import Phrase
    from steps.short_video.speech import RATE
    from steps.short_video.voice import narration

    phrases = [Phrase(text="One two three four.", start_s=0.5, duration_s=1.5),
               Phrase(text="Five six seven eight.", start_s=2.5, duration_s=1.5)]  # fmt: skip
    scene = Scene(index=0, narration="", caption="", duration_s=4.0,
                  style=STYLES[0], phrases=phrases)  # fmt: skip
    found = narration([scene], 4 * RATE)
    assert found is not None
    _, track = found
    assert np.abs(track[: int(0.5 * RATE)]).max() == 0.0  # silent before the first phrase
    assert np.abs(track[int(0.6 * RATE) : int(2.0 * RATE)]).max() > 0.05  # then speaking
    assert np.abs(track[int(2.6 * RATE) : int(4.0 * RATE)]).max() > 0.05


def test_torch_backend_matches_numpy_within_rounding() -> None:
    torch = pytest.importorskip("torch")
    scene = Scene(
        index=1,
        narration="n",
        caption="Same on every device",
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

    from reelflow.errors import StepStopped
    from reelflow.storage import LocalStore
    from steps.engine.context import StepContext
    from steps.short_video.render import encode_scene

    stop = {"now": False}
    ctx = StepContext(
        run_id=uuid.uuid4(),
        key="render_scene[0]",
        attempt=1,
        store=LocalStore(tmp_path),
        scratch=tmp_path / "scratch",
        stop_requested=lambda: stop["now"],
    )
    ctx.check_cancelled()  # nothing asked yet
    scene = Scene(index=0, narration="n", caption="Stop me", duration_s=3, style=STYLES[0])
    painter = ScenePainter(scene, 160, 288, 10)
    ticks = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 2:
            stop["now"] = True
        ctx.check_cancelled()

    with pytest.raises(StepStopped):
        encode_scene(painter, str(tmp_path / "s.mp4"), tick=tick)
    assert len(ticks) == 2  # stopped at the check where it was asked, not at the end


def test_byte_ranges_as_a_video_element_asks_for_them() -> None:
    from api.routes.artifacts import byte_range

    assert byte_range(None, 1000) is None
    assert byte_range("bytes=0-", 1000) == (0, 1000)
    assert byte_range("bytes=0-99", 1000) == (0, 100)
    assert byte_range("bytes=900-2000", 1000) == (900, 1000)  # clipped to the file
    assert byte_range("bytes=-100", 1000) == (900, 1000)  # the last 100 bytes
    assert byte_range("bytes=-5000", 1000) == (0, 1000)
    assert byte_range("items=0-9", 1000) is None  # not bytes: ignored, whole file
    assert byte_range("bytes=0-1,5-9", 1000) is None  # several ranges: whole file
    for outside in ("bytes=1000-", "bytes=2000-3000", "bytes=5-1"):
        with pytest.raises(ValueError):
            byte_range(outside, 1000)


def test_the_keys_of_steps_that_speak_or_draw_name_the_engine_and_the_font(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A voice made with no speech engine (or the program, not the library) is not reused
    where the library speaks; frames drawn with the shipped font say which font."""
    from steps.engine.task import STEPS
    from steps.short_video import speech
    from steps.short_video.models import font_version

    voice, script = STEPS["synthesize_voice"], STEPS["write_script"]
    here = (voice.version_now(), script.version_now())
    monkeypatch.setattr(speech, "_speaker", (speech.os.getpid(), None))
    assert voice.version_now() != here[0] and script.version_now() != here[1]
    assert str(voice.version_now()).endswith("+none")
    assert str(STEPS["render_scene"].version_now()).endswith(f"+{font_version()}")
