"""build-taste on a plain folder: clips in the containers cameras and phones write are found
and read, whatever the case of their suffix; side files (prompts, landmarks) are not clips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dwm_data.taste.layout import find_clips
from dwm_data.video import probe, read_clip

# (file name, container format, encoder): a phone's .MOV, a Matroska and a WebM (VP9) clip
CLIPS = [
    ("kitchen/pour.MOV", "mov", "libx264"),
    ("kitchen/wipe.mkv", "matroska", "libx264"),
    ("office/type.webm", "webm", "libvpx-vp9"),
    ("office/open.mp4", "mp4", "libx264"),
]


def write_clip(path: Path, container: str, encoder: str, frames: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(encoder, rate=Fraction(16))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            image = np.full((64, 96, 3), 20 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


def test_a_folder_of_clips_in_any_common_container(tmp_path):
    for name, container, encoder in CLIPS:
        write_clip(tmp_path / name, container, encoder)
    (tmp_path / "kitchen" / "pour.txt").write_text("pour water")
    (tmp_path / "kitchen" / "pour.hands.npz").write_bytes(b"")
    clips = find_clips(tmp_path)
    assert sorted(c.key_parts for c in clips) == [
        ("kitchen", "pour"),
        ("kitchen", "wipe"),
        ("office", "open"),
        ("office", "type"),
    ]
    for clip in clips:
        assert probe(Path(clip.path)).frames == 12, clip.path
        frames, source = read_clip(Path(clip.path), 5, Fraction(8), 64, 48, "letterbox")
        assert frames.shape == (5, 48, 64, 3) and len(source) == 5
