"""Side-by-side previews (static | hand | interaction | hand over interaction) for eyes.

Misalignment between the three videos is the defect that matters most and the one numbers hide
best, so every builder's output can be looked at the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dwm_data.errors import DwmDataError
from dwm_data.store import read_samples
from dwm_data.video import Codec, decode, encode

LABELS = ("static", "hand", "interaction", "overlay")


def overlay_hands(video: np.ndarray, hand: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend the hand render's non-black pixels over the interaction frames."""
    mask = (hand.max(axis=-1, keepdims=True) > 24).astype(np.float32) * alpha
    return (video * (1 - mask) + hand * mask).astype(np.uint8)


def panels(frames: dict[str, np.ndarray], overlay: bool) -> np.ndarray:
    """(F, H, W*k, 3): the videos next to each other, with a 2-pixel gap."""
    parts = [frames["static"], frames["hand"], frames["video"]]
    if overlay:
        parts.append(overlay_hands(frames["video"], frames["hand"]))
    f, h = parts[0].shape[:2]
    gap = np.full((f, h, 2, 3), 255, dtype=np.uint8)
    joined = [p if i == 0 else np.concatenate([gap, p], axis=2) for i, p in enumerate(parts)]
    return np.concatenate(joined, axis=2)


LABEL_HEIGHT = 28


def _label(image: np.ndarray, title: str, texts: Iterable[str], width: int) -> np.ndarray:
    """Two text lines above a row: the sample, then the name of each panel."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (image.shape[1], LABEL_HEIGHT), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    draw.text((2, 1), title, fill=(255, 255, 0))
    for i, text in enumerate(texts):
        draw.text((i * (width + 2) + 2, 14), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(strip), image], axis=0)


def _enlarge(frames: np.ndarray, min_width: int = 160) -> np.ndarray:
    """Nearest-neighbour upscaling of tiny videos, so a preview of the tiny recipe is legible."""
    factor = -(-min_width // frames.shape[2])
    return frames if factor <= 1 else frames.repeat(factor, axis=1).repeat(factor, axis=2)


def write_preview(
    shards: str | Path,
    out: Path,
    keys: list[str] | None = None,
    count: int = 3,
    overlay: bool = True,
) -> list[str]:
    """A .mp4 (samples one after another) or a .png contact sheet (4 instants per sample)."""
    if out.suffix not in (".mp4", ".png"):
        raise DwmDataError(f"preview: --out must end in .mp4 or .png, got {out.name}")
    chosen = []
    for sample in read_samples(shards):
        if (keys and sample.key in keys) or (not keys and len(chosen) < count):
            chosen.append(sample)
        if (keys and len(chosen) == len(keys)) or (not keys and len(chosen) == count):
            break
    if not chosen:
        raise DwmDataError(
            f"preview: no sample in {shards}" + (f" with key {keys}" if keys else "")
        )
    labels = LABELS[: 4 if overlay else 3]
    strips = []
    for sample in chosen:
        frames = {
            name: _enlarge(decode(getattr(sample, name))) for name in ("video", "static", "hand")
        }
        strips.append((sample.key, panels(frames, overlay), frames["video"].shape[2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        from PIL import Image

        rows = []
        for key, strip, width in strips:
            picks = np.linspace(0, len(strip) - 1, 4).round().astype(int)
            rows.extend(_label(strip[i], f"{key}  frame {i}", labels, width) for i in picks)
        widest = max(r.shape[1] for r in rows)
        sheet = np.concatenate(
            [np.pad(r, ((0, 2), (0, widest - r.shape[1]), (0, 0))) for r in rows], axis=0
        )
        Image.fromarray(sheet).save(out)
    else:
        widest = max(s.shape[2] for _, s, _ in strips)
        height = max(s.shape[1] for _, s, _ in strips) + LABEL_HEIGHT
        video = [
            np.pad(
                _label(frame, key, labels, width),
                ((0, height - LABEL_HEIGHT - frame.shape[0]), (0, widest - frame.shape[1]), (0, 0)),
            )
            for key, strip, width in strips
            for frame in strip
        ]
        fps = chosen[0].meta.get("fps", "8")
        pad_w, pad_h = (-widest) % 2, (-height) % 2
        video = [np.pad(f, ((0, pad_h), (0, pad_w), (0, 0))) for f in video]
        out.write_bytes(encode(np.stack(video), fps, Codec(preset="veryfast")))
    return [s.key for s in chosen]
