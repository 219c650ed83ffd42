"""Captions: a phrase laid out once in the frame's safe area (lines that fit, the font
shrunk until they do, a phrase too long for it paged), with each word's box, so the word
being spoken can be lit in its own box."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from steps.short_video.models import FONT_PATH

SAFE_W, SAFE_LINES = 0.86, 3


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size)


@dataclass
class Caption:
    """A phrase laid out: its ink and shadow masks (0..256 weights), where they go, and each
    word's box in the mask (x0, x1, y0, y1), in the phrase's word order."""

    start_s: float
    ink: np.ndarray
    shadow: np.ndarray
    x0: int
    y0: int
    boxes: list[tuple[int, int, int, int]]
    word_starts: list[float]


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str] | None:
    """Lines of `text` no wider than max_width (a word too wide alone is split), or None
    when it takes more than SAFE_LINES."""
    chars = max(4, int(max_width / (font.size * 0.55)))
    while chars >= 4:
        lines = textwrap.wrap(text, width=chars, break_long_words=True) or [""]
        if max(font.getlength(line) for line in lines) <= max_width:
            return lines if len(lines) <= SAFE_LINES else None
        chars -= 1
    return None


def _layout(text: str, width: int) -> tuple[ImageFont.FreeTypeFont, list[str] | None]:
    """The largest font (from a thirteenth of the width down) at which the text fits the
    safe area in at most three lines, and the lines; None when not even the smallest does."""
    size = max(16, width // 13)
    while True:
        font = _font(size)
        lines = _wrap(text, font, int(width * SAFE_W))
        if lines is not None or size <= 8:
            return font, lines
        size -= 2


def layout_caption(text: str, width: int, height: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """`_layout`'s font and lines (a phrase too long to fit is paged: `caption_pages`)."""
    font, lines = _layout(text, width)
    return font, lines or textwrap.wrap(text, 12)[:SAFE_LINES]


def caption_pages(
    text: str, start_s: float, word_starts: list[float], width: int, height: int
) -> list[Caption]:
    """A phrase's captions: one, or, when it cannot fit the safe area whole even at the
    smallest size, its words in consecutive pages, each shown from its first word's start
    (no word is ever dropped)."""
    words = text.split(" ")
    if len(words) > 1 and _layout(text, width)[1] is None:
        half = len(words) // 2
        starts = [*word_starts, *[start_s] * (len(words) - len(word_starts))]
        return [
            *caption_pages(" ".join(words[:half]), start_s, starts[:half], width, height),
            *caption_pages(" ".join(words[half:]), starts[half], starts[half:], width, height),
        ]
    return [caption(text, start_s, word_starts, width, height)]


def caption(
    text: str, start_s: float, word_starts: list[float], width: int, height: int
) -> Caption:
    font, lines = layout_caption(text, width, height)
    size = int(font.size)
    line_h, pad, drop = int(size * 1.25), size // 2, max(2, size // 16)
    box_w = int(max(font.getlength(line) for line in lines)) + 2 * pad
    box_h = line_h * len(lines) + pad
    ink, shadow = Image.new("L", (box_w, box_h), 0), Image.new("L", (box_w, box_h), 0)
    pieces: list[tuple[str, tuple[int, int, int, int]]] = []
    for mask, dx in ((ink, 0), (shadow, drop)):
        draw = ImageDraw.Draw(mask)
        for i, line in enumerate(lines):
            x = (box_w - font.getlength(line)) / 2 + dx
            y = pad // 2 + i * line_h + dx
            draw.text((x, y), line, fill=255, font=font)
            if dx == 0:  # each piece's box, from the advance widths before it
                at = x
                for piece in line.split(" "):
                    w = font.getlength(piece)
                    pieces.append((piece, (int(at), math.ceil(at + w), int(y), int(y + line_h))))
                    at += w + font.getlength(" ")
    boxes = _word_boxes(text.split(" "), pieces)
    x0 = (width - box_w) // 2
    y0 = max(8, min(height - box_h - 8, int(height * 0.62) - box_h // 2))
    weights = [np.asarray(m, np.uint32) * 256 // 255 for m in (ink, shadow)]
    return Caption(start_s, weights[0], weights[1], x0, y0, boxes, word_starts)


def _word_boxes(
    words: list[str], pieces: list[tuple[str, tuple[int, int, int, int]]]
) -> list[tuple[int, int, int, int]]:
    """One box per word of the text, in its order: a word the wrap split across lines (at
    a hyphen, or too long for one) is lit where it starts, so no later word is lit one
    box behind. Words the layout could not show get none."""
    boxes: list[tuple[int, int, int, int]] = []
    k = 0
    for word in words:
        if not word:  # two spaces in a row: no word of its own to light
            boxes.append(boxes[-1] if boxes else (0, 0, 0, 0))
            continue
        if k >= len(pieces):
            break
        got, box = pieces[k][0], pieces[k][1]
        k += 1
        while len(got) < len(word) and k < len(pieces) and word.startswith(got + pieces[k][0]):
            got += pieces[k][0]
            k += 1
        boxes.append(box)
    return boxes


def word_starts(scene_phrase: Any, count: int) -> list[float]:
    """Each caption word's start: the synthesizer's, or spread over the phrase by length."""
    words = scene_phrase.words
    if len(words) == count:
        return [w.start_s for w in words]
    tokens = scene_phrase.text.split()
    total = sum(len(t) + 1 for t in tokens) or 1
    at, out = scene_phrase.start_s, []
    for token in tokens[:count]:
        out.append(at)
        at += scene_phrase.duration_s * (len(token) + 1) / total
    return out + [at] * (count - len(out))
