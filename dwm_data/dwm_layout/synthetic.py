"""A small synthetic scene written in the official layout, for the demo and the tests.

A camera pans over a textured table; in the interaction video a hand (a shaded blob in the
official right-hand colour) pushes a box; the static video is the same camera path over the table
with the box at rest; the hand video is the hand alone on black. Real H.264 files, real layout,
so the importer runs on it exactly as on the official release.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.dwm_layout import SUBDIRS
from dwm_data.sample import HAND_COLORS
from dwm_data.video import Codec, encode


def _table(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    wood = 120 + 40 * np.sin(x / 7.0 + 3 * np.sin(y / 23.0)) + rng.normal(0, 6, (height, width))
    canvas = np.stack([wood * 1.1, wood * 0.8, wood * 0.5], axis=-1)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _disc(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def synthetic_triplet(frames: int, width: int, height: int, seed: int = 0) -> dict[str, np.ndarray]:
    """(F, H, W, 3) uint8 arrays for video, static and hand."""
    rng = np.random.default_rng(seed)
    table = _table(height * 2, width * 2, rng)
    box_color = rng.integers(40, 220, 3)
    out = {name: np.zeros((frames, height, width, 3), np.uint8) for name in SUBDIRS}
    hand_rgb = (np.array(HAND_COLORS["right"]) * 255).astype(np.float32)
    for f in range(frames):
        t = f / max(1, frames - 1)
        ox, oy = int(t * width * 0.5), int(t * height * 0.3)  # the camera pans
        view = table[oy : oy + height, ox : ox + width].copy()
        box_x0, box_y0 = width * 0.9 - ox, height * 0.8 - oy  # box at rest, in view coordinates
        static = view.copy()
        bw, bh = int(width * 0.15), int(height * 0.15)
        _paint_box(static, box_x0, box_y0, bw, bh, box_color)
        moved = view.copy()
        push = t * width * 0.25
        _paint_box(moved, box_x0 + push, box_y0, bw, bh, box_color)
        hx, hy = box_x0 + push - bw * 0.9, box_y0 + bh * 0.5
        r = _disc((height, width), hx, hy, width * 0.09, height * 0.12)
        inside = r < 1
        shade = np.clip(1.0 - 0.5 * r, 0.4, 1.0)[..., None]
        hand = np.zeros_like(view)
        hand[inside] = (hand_rgb * shade)[inside].astype(np.uint8)
        skin = np.array([224, 172, 140], np.float32)
        moved[inside] = (skin * shade)[inside].astype(np.uint8)
        out["video"][f], out["static"][f], out["hand"][f] = moved, static, hand
    return out


def _paint_box(image: np.ndarray, x: float, y: float, w: int, h: int, color: np.ndarray) -> None:
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = max(0, x0), max(0, y0)
    x2, y2 = min(image.shape[1], x0 + w), min(image.shape[0], y0 + h)
    if x2 > x1 and y2 > y1:
        image[y1:y2, x1:x2] = color


def write_synthetic_layout(
    root: Path,
    clips: int = 3,
    frames: int = 24,
    width: int = 128,
    height: int = 96,
    fps: Fraction | int = 10,
    scene: str = "synthetic_scene",
    recording: str = "rec0",
    stems: list[str] | None = None,
) -> list[Path]:
    """Write `clips` triplets (named `stems`, default 00000, 00001, ...) under
    root/<scene>/<recording>/...; returns the interaction paths."""
    base = root / scene / recording
    codecs = {
        "video": Codec(preset="veryfast"),
        "static": Codec(preset="veryfast"),
        "hand": Codec(preset="veryfast", pix_fmt="yuv444p"),
    }
    written = []
    for clip, stem in enumerate(stems or [f"{clip:05d}" for clip in range(clips)]):
        triplet = synthetic_triplet(frames, width, height, seed=clip)
        for name, sub in SUBDIRS.items():
            path = base / sub / f"{stem}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(triplet[name], fps, codecs[name]))
        prompt = base / "prompts_rewrite" / f"{stem}.txt"
        prompt.parent.mkdir(parents=True, exist_ok=True)
        prompt.write_text(
            f"A right hand pushes the box {['left', 'right', 'forward'][clip % 3]} across the wooden table."
        )
        written.append(base / SUBDIRS["video"] / f"{stem}.mp4")
    return written
