"""Inputs and outputs of the short_video stages, and the workflow's params."""

from __future__ import annotations

import hashlib
import uuid
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from steps import Artifact

#: The caption font, shipped with the project (DejaVu Sans Bold; its licence beside it):
#: the same glyphs on every machine, so the same scene is the same bytes everywhere.
FONT_PATH = Path(__file__).parent / "data" / "fonts" / "DejaVuSans-Bold.ttf"


@lru_cache(maxsize=1)
def font_version() -> str:
    """The caption font's bytes (by digest): frames drawn with another font are not these."""
    return hashlib.sha256(FONT_PATH.read_bytes()).hexdigest()[:16]


@lru_cache(maxsize=1)
def font_codepoints() -> frozenset[int]:
    """The characters the caption font has glyphs for."""
    from fontTools.ttLib import TTFont

    with TTFont(FONT_PATH, lazy=True) as font:
        return frozenset(font.getBestCmap())


class ShortVideoParams(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"topic": "volcano", "length_seconds": 20}]}
    )

    topic: str | None = Field(
        None,
        max_length=200,
        description="what the video is about: a bundled trend matching it, else the topic itself"
        " (any words the caption font can draw)",
    )
    trend_id: str | None = Field(None, max_length=200, description="pick this trend by id")
    length_seconds: int = Field(30, ge=15, le=60, description="target video length")
    width: int = Field(720, ge=144, le=2160, multiple_of=2)
    height: int = Field(1280, ge=144, le=3840, multiple_of=2)
    fps: int = Field(30, ge=10, le=60)
    voice: bool = Field(True, description="narrate (espeak-ng when installed); else music bed")
    images: list[uuid.UUID] = Field(
        [], max_length=16, description="uploaded images (POST /assets ids): scene backgrounds"
    )
    music: uuid.UUID | None = Field(None, description="an uploaded audio file: the music bed")
    max_attempts: int | None = Field(None, ge=1, le=20, description="retry budget of every step")

    #: Params naming uploaded assets: each id must name an asset when the run is started.
    asset_fields: ClassVar[dict[str, str]] = {"images": "image", "music": "audio"}

    @field_validator("topic")
    @classmethod
    def _servable(cls, v: str | None) -> str | None:
        """A topic is refused here, never at run time: it must have a letter or digit, and
        every character must be one the caption font can draw."""
        if v is None:
            return None
        v = " ".join(v.split())
        if not any(ch.isalnum() for ch in v):
            raise ValueError("needs at least one letter or digit")
        missing = sorted({ch for ch in v if ch != " " and ord(ch) not in font_codepoints()})
        if missing:
            raise ValueError(
                f"has characters the caption font cannot draw: {''.join(missing[:10])}"
            )
        return v

    @model_validator(mode="after")
    def _one_choice(self) -> ShortVideoParams:
        if self.topic and self.trend_id:
            raise ValueError("give topic or trend_id, not both")
        return self


# What each stage reads of the params: the part of its input key that params make. A
# patch of a field a stage does not read (publish's, say) leaves its key, and its result.


class TrendParams(BaseModel):
    topic: str | None = None
    trend_id: str | None = None


class ScriptParams(TrendParams):
    length_seconds: int = 30
    fps: int = 30
    images: list[uuid.UUID] = []


class VoiceParams(BaseModel):
    voice: bool = True
    music: uuid.UUID | None = None


class FrameParams(BaseModel):
    """What a scene's frames depend on besides the scene itself."""

    width: int = 720
    height: int = 1280
    fps: int = 30


class Trend(BaseModel):
    id: str
    title: str
    score: float
    hashtags: list[str]
    summary: str = ""
    points: list[str] = []


class TrendsOut(BaseModel):
    source: str
    trends: list[Trend]
    chosen: Trend


class Style(BaseModel):
    name: str
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    accent: tuple[int, int, int]
    motion: Literal["drift", "pulse", "sweep"]


class Word(BaseModel):
    """A word of a phrase and when it is spoken, from the start of its scene."""

    text: str
    start_s: float
    end_s: float


class Phrase(BaseModel):
    """A piece of narration, spoken and captioned together in its window of the scene: at
    `wpm` words a minute, its words at the times the synthesizer reported."""

    text: str
    start_s: float  # from the start of its scene
    duration_s: float
    wpm: int = 165
    words: list[Word] = []


class Scene(BaseModel):
    """One scene: everything its render reads, and nothing about the rest of the video (no
    absolute time), so a longer scene 3 changes no other scene's render."""

    index: int
    narration: str
    caption: str
    duration_s: float
    style: Style
    #: The narration's phrases, covering the scene: the caption shows the one being spoken.
    phrases: list[Phrase] = []
    #: An uploaded image behind the scene (panned and zoomed), instead of the gradient.
    background: Artifact | None = None


class Script(BaseModel):
    writer: str
    trend_id: str
    title: str
    hook: str
    hashtags: list[str]
    scenes: list[Scene]

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.scenes)

    def starts(self) -> list[float]:
        """Where each scene starts in the video: the scenes before it, end to end."""
        out, at = [], 0.0
        for scene in self.scenes:
            out.append(at)
            at += scene.duration_s
        return out


class VoiceOut(BaseModel):
    """The video's sound: the narration over a music bed that ducks under it, normalised."""

    engine: Literal["espeak-ng", "espeak-ng-library", "tone-bed", "none"]
    sample_rate: int
    duration_s: float
    audio: Artifact
    music: str = "generated"  # or the uploaded asset's id
    loudness_lufs: float | None = None
    true_peak_dbtp: float | None = None


class Segment(BaseModel):
    #: How this attempt got there, not what came out: left out of the output's digest (a
    #: segment recovered from checkpoints is the same segment).
    unkeyed: ClassVar[frozenset[str]] = frozenset({"frames_rendered", "chunks_kept"})

    index: int
    frames: int
    fps: int
    width: int
    height: int
    backend: str
    video: Artifact
    #: Frames this attempt encoded (the rest came from an earlier attempt's checkpoints).
    frames_rendered: int = 0
    chunks: int = 1
    chunks_kept: int = 0


class VideoOut(BaseModel):
    duration_s: float
    width: int
    height: int
    fps: int
    video: Artifact
    thumbnail: Artifact
    #: The encoded audio's true peak (dBTP), as a player decodes it.
    true_peak_dbtp: float | None = None


class Published(BaseModel):
    directory: str
    video: Artifact
    thumbnail: Artifact
    metadata: Artifact
