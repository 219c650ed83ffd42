"""Frames of one scene: animated gradient background, wrapped caption, progress bar.

The background (a drifting or pulsing gradient with a soft diagonal band sweeping across)
is computed at a quarter of the resolution, with NumPy or with torch on a CUDA device when
one is there, and scaled up by repeating pixels: it is so smooth that neighbouring low
resolution pixels differ by a level or two, so nothing shows, and a frame costs a few
milliseconds instead of tens. The caption is rasterised once per scene and blended only where it has
ink. Both backends share everything after the background, so they agree to rounding.
"""

from __future__ import annotations

import math
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from steps.short_video.models import Scene

FADE_S = 0.4
SCALE = 4
BAND_WIDTH = 0.08
# The band's profile exp(-(d / w)^2) as a table over d in [-2, 2), built once with scalar
# libm, so a frame is the same bits every time it is drawn (videos are compared by sha256):
# vectorised exp can differ in the last bit with memory alignment, and values small enough
# to be denormal flip to zero once an encoder has set flush-to-zero on the thread. Entries
# below 1e-6 are zero for that reason.
_LUT_STEPS = 1024
_BAND_LUT = np.array(
    [0.35 * math.exp(-(((i / _LUT_STEPS - 2.0) / BAND_WIDTH) ** 2)) for i in range(4 * _LUT_STEPS)],
    dtype=np.float32,
)
_BAND_LUT[_BAND_LUT < 1e-6] = 0.0
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
)


def torch_device() -> Any | None:
    """A CUDA device when torch and a GPU are both present, else None (NumPy is used)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.device("cuda") if torch.cuda.is_available() else None


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def caption_mask(text: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Alpha masks (float32, 0..1) of the wrapped caption and its drop shadow, and where
    their top-left corner goes in the frame."""
    size = max(16, width // 13)
    font = _font(size)
    max_width = int(width * 0.86)
    chars = max(8, int(max_width / (size * 0.55)))
    lines = textwrap.wrap(text, width=chars) or [""]
    while chars > 8 and max(font.getlength(line) for line in lines) > max_width:
        chars -= 2
        lines = textwrap.wrap(text, width=chars)
    line_h = int(size * 1.25)
    pad, drop = size // 2, max(2, size // 16)
    box_w = int(max(font.getlength(line) for line in lines)) + 2 * pad
    box_h = line_h * len(lines) + pad
    ink, shadow = Image.new("L", (box_w, box_h), 0), Image.new("L", (box_w, box_h), 0)
    for mask, dx in ((ink, 0), (shadow, drop)):
        draw = ImageDraw.Draw(mask)
        for i, line in enumerate(lines):
            x = (box_w - font.getlength(line)) / 2 + dx
            draw.text((x, pad // 2 + i * line_h + dx), line, fill=255, font=font)
    x0 = (width - box_w) // 2
    y0 = min(height - box_h - 8, int(height * 0.62) - box_h // 2)
    to_f = np.float32(1 / 255)
    return np.asarray(ink, np.float32) * to_f, np.asarray(shadow, np.float32) * to_f, x0, y0


class ScenePainter:
    def __init__(self, scene: Scene, width: int, height: int, fps: int, device: Any = None):
        self.scene, self.w, self.h, self.fps = scene, width, height, fps
        self.frames = round(scene.duration_s * fps)
        self.device = device
        self.lw, self.lh = -(-width // SCALE), -(-height // SCALE)  # ceil
        style = scene.style
        top = np.array(style.top, np.float32)
        bottom = np.array(style.bottom, np.float32)
        self.accent = np.array(style.accent, np.float32)
        rows = np.linspace(0.0, 1.0, self.lh, dtype=np.float32)[:, None]
        cols = np.linspace(0.0, 1.0, self.lw, dtype=np.float32)[None, :]
        # Diagonal coordinate (x + y), normalised, at the low resolution.
        diag = (rows * self.lh + cols * self.lw) / (self.lw + self.lh)
        # One caption per spoken phrase (its window relative to the scene), or the scene's.
        phrases = scene.phrases or []
        texts = [(p.start_s, p.text) for p in phrases] or [(0.0, scene.caption)]
        self.captions = [(start, caption_mask(text, width, height)) for start, text in texts]
        self.bar_h = max(4, height // 160)
        self._weights: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._consts = (top, bottom, self.accent, rows, diag)
        if device is not None:
            import torch

            self._consts = tuple(torch.from_numpy(a).to(device) for a in self._consts)

    def caption_at(self, t: float) -> int:
        """Which caption shows at scene time t: the phrase being spoken."""
        current = 0
        for i, (start, _) in enumerate(self.captions):
            if start <= t + 1e-9:
                current = i
        return current

    def _caption_weights(self, which: int, fade: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel weights of a caption's blend, in 1/256: cached once fully faded in."""
        if fade >= 1.0 and which in self._weights:
            return self._weights[which]
        ink_mask, shadow = self.captions[which][1][:2]
        keep = np.rint((1 - shadow * (0.6 * fade)) * 256).astype(np.uint32)[..., None]
        ink = np.rint(ink_mask * fade * 256).astype(np.uint32)[..., None]
        if fade >= 1.0:
            self._weights[which] = (keep, ink)
        return keep, ink

    def background(self, t: float) -> np.ndarray:
        """The low-resolution background at time t, (lh, lw, 3) uint8 RGB."""
        top, bottom, accent, rows, diag = self._consts
        motion = self.scene.style.motion
        shift = np.float32(0.12 * math.sin(2 * math.pi * t / 4.0) if motion == "drift" else 0.0)
        pulse = 0.08 * math.sin(2 * math.pi * t / 1.5) if motion == "pulse" else 0.0
        gain, centre = np.float32(1.0 + pulse), np.float32((t / 3.0) % 1.5 - 0.25)
        if self.device is None:
            mix = np.clip(rows + shift, 0.0, 1.0)[..., None]
            img = np.clip((top + (bottom - top) * mix) * gain, 0.0, 255.0)
            slot = np.clip(((diag - centre + 2.0) * _LUT_STEPS).astype(np.int32), 0, 4095)
            band = _BAND_LUT[slot][..., None]
            img = img + (accent - img) * band
            out: np.ndarray = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            return out
        import torch

        mix = torch.clamp(rows + float(shift), 0.0, 1.0)[..., None]
        img = torch.clamp((top + (bottom - top) * mix) * float(gain), 0.0, 255.0)
        band = (torch.exp(-(((diag - float(centre)) / BAND_WIDTH) ** 2)) * 0.35)[..., None]
        img = img + (accent - img) * band
        return torch.clamp(img + 0.5, 0, 255).to(torch.uint8).cpu().numpy()  # type: ignore[no-any-return]

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` of the scene, (h, w, 4) uint8 RGBA (opaque)."""
        t = index / self.fps
        small = np.empty((self.lh, self.lw, 4), np.uint8)
        small[..., :3] = self.background(t)
        small[..., 3] = 255
        # Upscale as whole 32-bit pixels: one cheap repeat per axis.
        packed = small.view(np.uint32)[..., 0]
        big = np.repeat(np.repeat(packed, SCALE, axis=1), SCALE, axis=0)[: self.h, : self.w]
        img = np.ascontiguousarray(big).view(np.uint8).reshape(self.h, self.w, 4)
        which = self.caption_at(t)
        since = t - self.captions[which][0]
        keep, ink = self._caption_weights(which, min(1.0, since / FADE_S) if FADE_S else 1.0)
        mask, _, x0, y0 = self.captions[which][1]
        mh, mw = mask.shape
        # Fixed-point blend (weights in 1/256): shadow darkens, then white ink covers.
        region = img[y0 : y0 + mh, x0 : x0 + mw, :3].astype(np.uint32)
        region = (region * keep) >> 8
        region = (region * (256 - ink) + 255 * ink) >> 8
        img[y0 : y0 + mh, x0 : x0 + mw, :3] = region.astype(np.uint8)
        progress = index / max(1, self.frames - 1)
        img[self.h - self.bar_h :, : round(self.w * progress), :3] = self.accent.astype(np.uint8)
        return img
