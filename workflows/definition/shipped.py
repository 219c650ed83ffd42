"""The workflows reelflow ships: `probe` (cheap steps, for smoke tests) and `short_video`."""

from steps import probe
from steps.short_video import compose, render, script, trends, voice
from steps.short_video.models import ShortVideoParams
from workflows.definition.headline import Headline
from workflows.definition.spec import chain, chord, map
from workflows.definition.workflow import Workflow

probe_workflow = Workflow(
    name="probe",
    version=1,
    canvas=chain(probe.a, probe.b, chord([map(probe.c, over="b.items")], probe.d), probe.e),
    params_model=probe.ProbeParams,
    description="Cheap steps for smoke-testing a deployment: a -> b -> chord(map c, d) -> e.",
)

#: A trend in, a published vertical video out. render_scene runs on the `gpu` queue.
short_video_workflow = Workflow(
    name="short_video",
    version=1,
    canvas=chain(
        trends.collect_trends,
        script.write_script,
        chord(
            [voice.synthesize_voice, map(render.render_scene, over="write_script.scenes")],
            compose.compose_video,
        ),
        compose.publish,
    ),
    params_model=ShortVideoParams,
    check=trends.unknown_trend,
    description="Turn a trend into a short vertical video: script, voice, scenes, compose.",
    headline=Headline(
        title=("write_script.title", "collect_trends.chosen.title", "params.topic"),
        thumbnail="compose_video.thumbnail",
    ),
)
