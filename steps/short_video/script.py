"""write_script: the writer's lines, timed by the synthesizer, as 3 to 8 scenes that fill
the video.

The writer (steps.short_video.writers) proposes a hook, lines best first, and an outro.
This step keeps as many lines as the length holds, speaks every phrase once (eSpeak NG in a
fresh process: deterministic) to learn how long it takes and when each word starts, and
lays the phrases end to end with short pauses, speeding the voice up a little or dropping
a line when they overrun. Speech then covers most of the video (at least 85%), the outro is
never cut, and each word's caption can light up when it is spoken. Scene durations follow
the speech, in whole frames adding up to the exact length. The same trend and params give
the same script, and so the same video.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

from steps import Artifact, StepContext, step
from steps.short_video.models import (
    Phrase,
    Scene,
    Script,
    ScriptParams,
    Style,
    TrendsOut,
    Word,
)
from steps.short_video.speech import speak_all
from steps.short_video.writers import Draft, writer, writer_version

STYLES = [
    Style(name="ocean", top=(12, 52, 99), bottom=(4, 120, 140), accent=(255, 209, 102),
          motion="drift"),
    Style(name="sunset", top=(94, 26, 80), bottom=(242, 112, 61), accent=(255, 255, 255),
          motion="sweep"),
    Style(name="forest", top=(16, 64, 40), bottom=(96, 160, 72), accent=(250, 240, 200),
          motion="pulse"),
    Style(name="night", top=(10, 10, 35), bottom=(60, 40, 120), accent=(120, 220, 255),
          motion="drift"),
    Style(name="citrus", top=(250, 180, 40), bottom=(230, 80, 60), accent=(30, 30, 30),
          motion="sweep"),
]  # fmt: skip

BASE_WPM, MAX_WPM = 165, 230
#: How much faster than the base rate a line may be spoken so that it fits.
FIT_SPEED = 1.15
#: Words a second at BASE_WPM, to choose how many lines to time.
WORDS_PER_S = BASE_WPM / 60
LEAD_S, PAUSE_S, SCENE_PAUSE_S, TAIL_S = 0.2, 0.18, 0.3, 0.35
MAX_SCENES = 8


def scene_count(length_seconds: int) -> int:
    return max(3, min(MAX_SCENES, round(length_seconds / 7.5)))


_PHRASE_END = re.compile(r"(?<=[.,!?;:])\s+")


def split_phrases(text: str) -> list[str]:
    """The text cut at its punctuation into phrases of at least three words."""
    pieces: list[str] = []
    for piece in _PHRASE_END.split(text.strip()):
        if pieces and (len(pieces[-1].split()) < 3 or len(piece.split()) < 3):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return pieces


def phrases_of(narration: str, start_s: float, duration_s: float) -> list[Phrase]:
    """Untimed narration (an operator's edit, say): its phrases, with windows covering the
    scene in proportion to their words."""
    pieces = split_phrases(narration)
    words = [len(p.split()) for p in pieces] or [1]
    total, at, out = sum(words), start_s, []
    for text, count in zip(pieces, words, strict=False):
        length = duration_s * count / total
        out.append(Phrase(text=text, start_s=round(at, 6), duration_s=round(length, 6)))
        at += length
    return out


def _caption(text: str, limit: int = 48) -> str:
    words, out = text.split(), ""
    for word in words:
        if len(out) + len(word) + 1 > limit:
            return out + "…"
        out = f"{out} {word}".strip()
    return out


def _estimate(text: str, wpm: int) -> tuple[float, Events]:
    """Without a synthesizer: the words' times by their characters, at `wpm`."""
    words = [(m.start(), len(m.group()), 0.0) for m in re.finditer(r"\S+", text)]
    seconds = len(words) / (wpm / 60)
    chars = sum(length + 1 for _, length, _ in words) or 1
    at, timed = 0.0, []
    for pos, length, _ in words:
        timed.append((pos, length, at))
        at += seconds * (length + 1) / chars
    return seconds, timed


Events = list[tuple[int, int, float]]


@dataclass
class Placed:
    """A phrase on the video's timeline: its start, spoken seconds and word events."""

    text: str
    start: float
    seconds: float
    words: Events


@dataclass
class LaidScene:
    phrases: list[Placed]
    wpm: int
    end: float
    start_frame: int = 0
    frames: int = 0


def _time(phrases: list[str], wpm: int, voiced: bool) -> list[tuple[float, Events]]:
    """Each phrase's spoken seconds and word events, in one fresh synthesizer."""
    spoken = speak_all([(p, wpm) for p in phrases]) if voiced else None
    if spoken is None:
        return [_estimate(p, wpm) for p in phrases]
    return [(s.seconds, s.words) for s in spoken[1]]


def _fits(scenes: list[list[str]], seconds: dict[str, float], speed: float = 1.0) -> float:
    """How long `scenes` take, spoken `speed` times the base rate: speech plus pauses."""
    phrases = [p for scene in scenes for line in scene for p in split_phrases(line)]
    gaps = LEAD_S + TAIL_S + PAUSE_S * (len(phrases) - len(scenes))
    speech = sum(seconds[p] for p in phrases) / speed
    return speech + gaps + SCENE_PAUSE_S * (len(scenes) - 1)


def _group(hook: str, body: list[str], outro: str, length_s: int) -> list[list[str]]:
    """The hook, the body lines in 1 to 6 scenes of about equal word counts, the outro."""
    middle = max(1, min(len(body), scene_count(length_s) - 2))
    words = [len(line.split()) for line in body]
    groups: list[list[str]] = [[] for _ in range(middle)]
    target, done, g = sum(words) / middle, 0, 0
    for line, count in zip(body, words, strict=True):
        if groups[g] and done + count / 2 > target * (g + 1) and g < middle - 1:
            g += 1
        groups[g].append(line)
        done += count
    return [[hook], *[grp for grp in groups if grp], [outro]]


def choose(draft: Draft, length_s: int, voiced: bool) -> tuple[list[list[str]], int]:
    """The scenes' lines and the rate that fills the length: every candidate timed once at
    the base rate, as many body lines kept (in order) as fit, a little faster if needed."""
    lines = [draft.hook, *draft.lines, draft.outro]
    all_phrases = [p for line in lines for p in split_phrases(line)]
    seconds = dict(zip(all_phrases, [d for d, _ in _time(all_phrases, BASE_WPM, voiced)],
                       strict=True))  # fmt: skip
    body: list[str] = []
    for line in draft.lines:
        trial = _group(draft.hook, [*body, line], draft.outro, length_s)
        if _fits(trial, seconds, FIT_SPEED) <= length_s:  # it fits, if a little faster
            body.append(line)
    if not body and draft.lines:  # a line at least, if it fits at the fastest rate
        trial = _group(draft.hook, draft.lines[:1], draft.outro, length_s)
        if _fits(trial, seconds, MAX_WPM / BASE_WPM) <= length_s:
            body = draft.lines[:1]
    scenes = _group(draft.hook, body, draft.outro, length_s)
    taken = _fits(scenes, seconds)
    fixed = taken - sum(seconds[p] for sc in scenes for ln in sc for p in split_phrases(ln))
    wpm = BASE_WPM
    if taken > length_s:  # speak faster, just enough
        wpm = min(MAX_WPM, math.ceil(BASE_WPM * (taken - fixed) / max(1.0, length_s - fixed)))
    return scenes, wpm


def lay_out(
    scenes: list[list[str]], wpm: int, length_s: int, fps: int, voiced: bool
) -> list[LaidScene]:
    """Every phrase with its spoken duration and word times (timed again as the voice will
    speak them: these lines, this rate, in this order), end to end with pauses, and the
    scene boundaries in whole frames."""
    phrases = [[p for line in scene for p in split_phrases(line)] for scene in scenes]
    flat = [p for scene in phrases for p in scene]
    timed = iter(_time(flat, wpm, voiced))
    speech = [[next(timed) for _ in scene] for scene in phrases]
    used = sum(d for scene in speech for d, _ in scene)
    gaps = LEAD_S + TAIL_S + PAUSE_S * (len(flat) - len(phrases))
    gaps += SCENE_PAUSE_S * (len(phrases) - 1)
    pauses = len(flat) - 1
    extra = min(0.5, max(0.0, length_s - used - gaps) / max(1, pauses + 1))
    out: list[LaidScene] = []
    at = LEAD_S
    for scene, scene_speech in zip(phrases, speech, strict=True):
        placed = []
        for i, (text, (seconds, words)) in enumerate(zip(scene, scene_speech, strict=True)):
            placed.append(Placed(text, at, seconds, words))
            at += seconds + (PAUSE_S + extra if i < len(scene) - 1 else 0.0)
        out.append(LaidScene(placed, wpm, at))
        at += SCENE_PAUSE_S + extra
    # Scene boundaries: halfway through each pause between scenes, in whole frames.
    cuts = [0]
    for a, b in itertools.pairwise(out):
        cuts.append(round((a.end + b.phrases[0].start) / 2 * fps))
    cuts.append(length_s * fps)
    # Speech that overruns even at the fastest rate (a writer's overlong lines): no scene
    # is shorter than its share of a second, the last ending at the length, never negative.
    least = max(1, min(fps, length_s * fps // (2 * len(out))))
    for i in range(len(out) - 1, 0, -1):
        cuts[i] = min(cuts[i], cuts[i + 1] - least)
    for i in range(1, len(out)):
        cuts[i] = max(cuts[i], cuts[i - 1] + least)
    for laid, start, end in zip(out, cuts, cuts[1:], strict=False):
        laid.start_frame, laid.frames = start, end - start
    return out


def _phrase(text: str, start: float, seconds: float, wpm: int, events: Events) -> Phrase:
    """A phrase at scene time `start`, with one Word per space-separated token of its text:
    the token starts when the synthesizer reported its first word event (a token with none,
    between its neighbours), and ends where the next starts (the last where speech ends)."""
    spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"[^ ]+", text)]
    starts: list[float | None] = []
    for a, b, _ in spans:
        inside = [at for pos, _, at in events if a <= pos < b]
        starts.append(start + min(inside) if inside else None)
    known = [(i, s) for i, s in enumerate(starts) if s is not None]
    if not known:
        known = [(0, start)]
    for i, s in enumerate(starts):  # fill the gaps by position between known neighbours
        if s is None:
            before = max((k for k in known if k[0] < i), default=(0, start))
            after = min((k for k in known if k[0] > i), default=(len(spans), start + seconds))
            share = (i - before[0]) / max(1, after[0] - before[0])
            starts[i] = before[1] + (after[1] - before[1]) * share
    begun = [float(s) if s is not None else start for s in starts]
    ends = [*begun[1:], start + seconds]
    words = [Word(text=tok, start_s=round(s, 4), end_s=round(e, 4))
             for (_, _, tok), s, e in zip(spans, begun, ends, strict=True)]  # fmt: skip
    return Phrase(text=text, start_s=round(start, 4), duration_s=round(seconds, 4), wpm=wpm,
                  words=words)  # fmt: skip


def build_script(draft: Draft, trend_id: str, hashtags: list[str], params: ScriptParams,
                 backgrounds: list[Artifact] | None = None) -> Script:  # fmt: skip
    # Timed by the synthesizer whether or not the voice is heard: the captions keep the
    # pace of speech, and turning the narration off changes the sound, not the pictures.
    lines, wpm = choose(draft, params.length_seconds, voiced=True)
    laid = lay_out(lines, wpm, params.length_seconds, params.fps, voiced=True)
    scenes = []
    for i, scene in enumerate(laid):
        offset = scene.start_frame / params.fps
        phrases = [
            _phrase(p.text, p.start - offset, p.seconds, scene.wpm, p.words) for p in scene.phrases
        ]
        narration = " ".join(p.text for p in phrases)  # the lines, as spoken
        scenes.append(
            Scene(
                index=i,
                narration=narration,
                caption=_caption(draft.title if i == 0 else narration),
                duration_s=scene.frames / params.fps,
                style=STYLES[(i + len(trend_id)) % len(STYLES)],
                phrases=phrases,
                background=backgrounds[i % len(backgrounds)] if backgrounds else None,
            )
        )
    return Script(writer=draft.writer, trend_id=trend_id, title=draft.title, hook=draft.hook,
                  hashtags=hashtags, scenes=scenes)  # fmt: skip


@step(key_extra=writer_version)
def write_script(ctx: StepContext, params: ScriptParams, collect_trends: TrendsOut) -> Script:
    trend = collect_trends.chosen
    draft = writer().draft(trend, params.length_seconds)
    backgrounds = [ctx.asset(i) for i in params.images]
    return build_script(draft, trend.id, trend.hashtags, params, backgrounds)
