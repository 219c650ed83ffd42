"""write_script: turn the chosen trend into a hook and 3 to 8 timed scenes.

The default writer is a deterministic template, so the same trend and params always give
the same script (and so the same video). A language-model writer plugs in through the
ScriptWriter protocol.
"""

from __future__ import annotations

import re
from typing import Protocol

from steps import step
from steps.short_video.models import (
    Phrase,
    Scene,
    Script,
    ScriptParams,
    Style,
    Trend,
    TrendsOut,
)

STYLES = [
    Style(
        name="ocean", top=(12, 52, 99), bottom=(4, 120, 140), accent=(255, 209, 102), motion="drift"
    ),
    Style(
        name="sunset",
        top=(94, 26, 80),
        bottom=(242, 112, 61),
        accent=(255, 255, 255),
        motion="sweep",
    ),
    Style(
        name="forest",
        top=(16, 64, 40),
        bottom=(96, 160, 72),
        accent=(250, 240, 200),
        motion="pulse",
    ),
    Style(
        name="night", top=(10, 10, 35), bottom=(60, 40, 120), accent=(120, 220, 255), motion="drift"
    ),
    Style(
        name="citrus", top=(250, 180, 40), bottom=(230, 80, 60), accent=(30, 30, 30), motion="sweep"
    ),
]

SECONDS_PER_SCENE = 7.5


class ScriptWriter(Protocol):
    name: str

    def write(self, trend: Trend, params: ScriptParams) -> Script: ...


def scene_count(length_seconds: int) -> int:
    return max(3, min(8, round(length_seconds / SECONDS_PER_SCENE)))


def _caption(text: str, limit: int = 48) -> str:
    words, out = text.split(), ""
    for word in words:
        if len(out) + len(word) + 1 > limit:
            return out + "…"
        out = f"{out} {word}".strip()
    return out


_PHRASE_END = re.compile(r"(?<=[.,!?;:])\s+")


def phrases_of(narration: str, start_s: float, duration_s: float) -> list[Phrase]:
    """The narration cut at its punctuation into phrases of at least three words, with
    windows covering the scene (from `start_s`, its start: 0) in proportion to their
    words: the voice speaks each phrase in its window and the caption shows it there, so
    the two cannot drift apart."""
    pieces: list[str] = []
    for piece in _PHRASE_END.split(narration.strip()):
        if pieces and (len(pieces[-1].split()) < 3 or len(piece.split()) < 3):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    words = [len(p.split()) for p in pieces] or [1]
    total, at, out = sum(words), start_s, []
    for text, count in zip(pieces, words, strict=False):
        length = duration_s * count / total
        out.append(Phrase(text=text, start_s=round(at, 6), duration_s=round(length, 6)))
        at += length
    return out


class TemplateWriter:
    name = "template-v1"

    def write(self, trend: Trend, params: ScriptParams) -> Script:
        n = scene_count(params.length_seconds)
        points = trend.points or [trend.summary or trend.title]
        hook = f"{trend.title}. Here is what you need to know."
        lines = [hook] + [points[i % len(points)] for i in range(n - 2)]
        lines.append(
            f"That's {trend.title.lower()} in {params.length_seconds} seconds. Follow for more!"
        )
        # Whole frames per scene, adding up to the exact length.
        total_frames = params.length_seconds * params.fps
        base, extra = divmod(total_frames, n)
        scenes = []
        for i, line in enumerate(lines):
            frames = base + (1 if i < extra else 0)
            narration = line if line.endswith((".", "!", "?")) else f"{line}."
            scenes.append(
                Scene(
                    index=i,
                    narration=narration,
                    caption=_caption(trend.title if i == 0 else line),
                    duration_s=frames / params.fps,
                    style=STYLES[(i + len(trend.id)) % len(STYLES)],
                    phrases=phrases_of(narration, 0.0, frames / params.fps),
                )
            )
        return Script(
            writer=self.name,
            trend_id=trend.id,
            title=trend.title,
            hook=hook,
            hashtags=trend.hashtags,
            scenes=scenes,
        )


WRITER: ScriptWriter = TemplateWriter()


@step()
def write_script(params: ScriptParams, collect_trends: TrendsOut) -> Script:
    return WRITER.write(collect_trends.chosen, params)
