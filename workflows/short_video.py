"""The `short_video` workflow: a trend in, a published vertical video out.

collect_trends -> write_script -> chord([synthesize_voice, map(render_scene over
write_script.scenes)], compose_video) -> publish. render_scene runs on the `gpu` queue.
"""

from steps import compose, publish, render, script, trends, voice
from steps.video_models import ShortVideoParams
from workflows.definition import Workflow
from workflows.spec import chain, chord, map

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
        publish.publish,
    ),
    params_model=ShortVideoParams,
    description="Turn a trend into a short vertical video: script, voice, scenes, compose.",
)
