"""Frames of one scene: a moving background, the spoken phrase with its current word lit,
a progress bar, and a short dip through black at each end (the transition between scenes).

The background is either the scene's image (centre-cropped to the frame, slowly zoomed and
panned) or a gradient with a soft diagonal band sweeping across, computed at a quarter of
the resolution (NumPy, or torch on a CUDA device) under a slow zoom, and scaled up by
repeating pixels. A phrase's caption is laid out once (lines that fit the safe area, the
font shrunk until they do) with each word's box, and pasted as one cached layer. A frame
is the same bits every time it is drawn (integer blending after the background).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from steps.short_video.captions import caption, caption_pages, word_starts
from steps.short_video.models import Scene

FADE_S = 0.25  # a caption's fade in
DIP_S = 0.12  # the dip through black at each end of a scene
SCALE = 4
BAND_WIDTH = 0.08
ZOOM = 0.08  # how much closer the background gets over a scene
HIGHLIGHT = np.array((255, 214, 10), np.uint32)  # the word being spoken
# The band's profile exp(-(d / w)^2) as a table over d in [-2, 2), built once with scalar
# libm, so a frame is the same bits every time it is drawn (vectorised exp can differ in the
# last bit with memory alignment). Entries below 1e-6 are zero.
_LUT_STEPS = 1024
_BAND_LUT = np.array(
    [0.35 * math.exp(-(((i / _LUT_STEPS - 2.0) / BAND_WIDTH) ** 2)) for i in range(4 * _LUT_STEPS)],
    dtype=np.float32,
)
_BAND_LUT[_BAND_LUT < 1e-6] = 0.0


def torch_device() -> Any | None:
    """A CUDA device when torch and a GPU are both present, else None (NumPy is used)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.device("cuda") if torch.cuda.is_available() else None


class ScenePainter:
    def __init__(self, scene: Scene, width: int, height: int, fps: int, device: Any = None,
                 image: Path | None = None) -> None:  # fmt: skip
        self.scene, self.w, self.h, self.fps = scene, width, height, fps
        self.frames = round(scene.duration_s * fps)
        self.device = device
        self.lw, self.lh = -(-width // SCALE), -(-height // SCALE)  # ceil
        style = scene.style
        self.accent = np.array(style.accent, np.float32)
        rows = np.linspace(-0.5, 0.5, self.lh, dtype=np.float32)[:, None]
        cols = np.linspace(-0.5, 0.5, self.lw, dtype=np.float32)[None, :]
        self._grid = (rows, cols)
        self._colours = (np.array(style.top, np.float32), np.array(style.bottom, np.float32))
        self.image = self._cover(image) if image is not None else None
        self.captions = [
            page
            for p in scene.phrases
            for page in caption_pages(
                p.text, p.start_s, word_starts(p, len(p.text.split(" "))), width, height
            )
        ] or [caption(scene.caption, 0.0, [], width, height)]
        self.bar_h = max(4, height // 160)
        self._small = np.full((self.lh, self.lw, 4), 255, np.uint8)  # RGBA, low resolution
        self._layer_cache: dict[tuple[int, int, int], Image.Image] = {}
        if device is not None:
            import torch

            self._grid = tuple(torch.from_numpy(a).to(device) for a in self._grid)

    def _cover(self, path: Path) -> Image.Image:
        """The image centre-cropped to the frame's shape, at the frame's size plus the zoom."""
        with Image.open(path) as source:
            img = source.convert("RGB")
        aspect = self.w / self.h
        if img.width / img.height > aspect:
            keep = round(img.height * aspect)
            img = img.crop(((img.width - keep) // 2, 0, (img.width - keep) // 2 + keep, img.height))
        else:
            keep = round(img.width / aspect)
            img = img.crop(
                (0, (img.height - keep) // 2, img.width, (img.height - keep) // 2 + keep)
            )
        return img.resize(
            (round(self.w * (1 + ZOOM)), round(self.h * (1 + ZOOM))), Image.Resampling.BILINEAR
        )

    def caption_at(self, t: float) -> int:
        """Which caption shows at scene time t: the phrase being spoken."""
        current = 0
        for i, c in enumerate(self.captions):
            if c.start_s <= t + 1e-9:
                current = i
        return current

    def _zoom(self, t: float) -> float:
        return 1.0 + ZOOM * t / max(self.scene.duration_s, 1e-6)

    def background(self, t: float) -> np.ndarray:
        """The low-resolution gradient at time t, (lh, lw, 3) uint8 RGB."""
        rows, cols = self._grid
        top, bottom = self._colours
        zoom, motion = self._zoom(t), self.scene.style.motion
        shift = 0.12 * math.sin(2 * math.pi * t / 4.0) if motion == "drift" else 0.0
        gain = 1.0 + (0.08 * math.sin(2 * math.pi * t / 1.5) if motion == "pulse" else 0.0)
        centre = (t / 3.0) % 1.5 - 0.25
        if self.device is None:
            # The gradient varies by row only (one colour a row) and the band's position is
            # a row part plus a column part: only the blend is per pixel, one channel at a
            # time, written straight into the frame's low-resolution buffer.
            r, c = rows / np.float32(zoom), cols / np.float32(zoom)
            mix = np.clip(r + np.float32(0.5 + shift), 0.0, 1.0)  # (lh, 1)
            base = np.clip((top + (bottom - top) * mix) * np.float32(gain), 0.0, 255.0)
            row_at = (r + np.float32(1.0)) / np.float32(2.0) - np.float32(centre) + 2.0
            at = row_at * _LUT_STEPS + c * np.float32(_LUT_STEPS / 2)
            band = _BAND_LUT[np.clip(at.astype(np.int32), 0, 4095)]  # (lh, lw)
            towards = self.accent - base  # (lh, 3)
            for k in range(3):
                channel = band * towards[:, k : k + 1]
                channel += base[:, k : k + 1] + np.float32(0.5)
                np.clip(channel, 0, 255, out=channel)
                self._small[..., k] = channel
            return self._small[..., :3]
        import torch

        r, c = rows / zoom, cols / zoom
        mix = torch.clamp(r + 0.5 + shift, 0.0, 1.0)[..., None]
        t_top, t_bottom = (torch.tensor(x, device=self.device) for x in (top, bottom))
        img = torch.clamp((t_top + (t_bottom - t_top) * mix) * gain, 0.0, 255.0)
        diag = (r + c + 1.0) / 2.0
        band = (torch.exp(-(((diag - centre) / BAND_WIDTH) ** 2)) * 0.35)[..., None]
        img = img + (torch.tensor(self.accent, device=self.device) - img) * band
        return torch.clamp(img + 0.5, 0, 255).to(torch.uint8).cpu().numpy()  # type: ignore[no-any-return]

    def _picture(self, t: float) -> np.ndarray:
        """The image, zoomed in and drifting across as the scene goes on, (h, w, 3)."""
        assert self.image is not None
        cw, ch = self.w * (1 + ZOOM) / self._zoom(t), self.h * (1 + ZOOM) / self._zoom(t)
        cw, ch = min(cw, self.image.width), min(ch, self.image.height)
        drift = t / max(self.scene.duration_s, 1e-6)
        x = (self.image.width - cw) * (0.5 + 0.4 * (drift - 0.5))
        y = (self.image.height - ch) / 2
        view = self.image.resize(
            (self.w, self.h), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch)
        )
        return np.asarray(view, np.uint8)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` of the scene, (h, w, 4) uint8 RGBA (opaque)."""
        t = index / self.fps
        if self.image is not None:
            img = np.empty((self.h, self.w, 4), np.uint8)
            img[..., 3] = 255
            img[..., :3] = self._picture(t)
        else:
            painted = self.background(t)
            if self.device is not None:
                self._small[..., :3] = painted
            packed = self._small.view(np.uint32)[..., 0]  # upscale as whole 32-bit pixels
            big = np.repeat(np.repeat(packed, SCALE, axis=1), SCALE, axis=0)[: self.h, : self.w]
            img = np.ascontiguousarray(big).view(np.uint8).reshape(self.h, self.w, 4)
        self._caption(img, t)
        progress = index / max(1, self.frames - 1)
        img[self.h - self.bar_h :, : round(self.w * progress), :3] = self.accent.astype(np.uint8)
        dip = min(index + 1, self.frames - index) / max(1.0, DIP_S * self.fps)
        if dip < 1.0:  # the dip through black: a cut between scenes becomes a blink
            img[..., :3] = (img[..., :3].astype(np.uint32) * int(dip * 256) >> 8).astype(np.uint8)
        return img

    def _caption(self, img: np.ndarray, t: float) -> None:
        """Composite the current phrase over the frame (Pillow's paste with a mask: integer
        blending in C): its shadow darkens by 60%, then its ink covers, white, or yellow
        for the word being spoken. The layers are made once per phrase and word."""
        which = self.caption_at(t)
        cap = self.captions[which]
        fade = int(min(1.0, max(0.0, t - cap.start_s) / FADE_S) * 255) if FADE_S else 255
        spoken = [i for i, s in enumerate(cap.word_starts) if s <= t + 1e-9]
        lit = spoken[-1] if spoken and spoken[-1] < len(cap.boxes) else -1
        layer = self._layer(which, lit, fade)
        frame = Image.frombuffer("RGBA", (self.w, self.h), img, "raw", "RGBA", 0, 1)
        frame.readonly = False
        frame.paste(layer, (cap.x0, cap.y0), layer)

    def _layer(self, which: int, lit: int, fade: int) -> Image.Image:
        """The shadow with the text over it, as one layer (the "over" operator is
        associative: pasting the two at once is pasting one, then the other)."""
        key = (which, lit, fade)
        found = self._layer_cache.get(key)
        if found is not None:
            return found
        cap = self.captions[which]
        mh, mw = cap.ink.shape
        to_alpha = fade / 256
        shadow = np.zeros((mh, mw, 4), np.uint8)
        shadow[..., 3] = np.minimum(255, cap.shadow * 154 * to_alpha / 256).astype(np.uint8)
        text = np.zeros((mh, mw, 4), np.uint8)
        text[..., :3] = 255
        if lit >= 0:
            x0, x1, y0, y1 = cap.boxes[lit]
            text[y0:y1, x0:x1, :3] = HIGHLIGHT.astype(np.uint8)
        text[..., 3] = np.minimum(255, cap.ink * to_alpha).astype(np.uint8)
        layer = Image.alpha_composite(
            Image.fromarray(shadow, "RGBA"), Image.fromarray(text, "RGBA")
        )
        if fade == 255:  # a fading layer is drawn once: not worth keeping
            self._layer_cache[key] = layer
        return layer
