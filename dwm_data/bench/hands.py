"""build-taste speed: decoding, hand estimation, hand-video rendering and encoding of one clip.

The question is whether rendering ever limits a run: the target is rendering at least 10x faster
than estimation. All figures come from one run on the same clip (the real fixed-camera clip
when ../shared/data is there, else the demo's rendered clip), on this machine's CPU.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.recipe import load_recipe

REAL_CLIP = (
    Path(__file__).resolve().parents[3] / "shared/data/dwm_realworld/realworld_fixed/pour_coke.mp4"
)


def _timed(step: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def two_hands(mano_dir: Path, frames: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], Any]:
    """Both hands of a generated MANO model moving in front of the camera (F,2,778,3), their
    faces, and the model (the real MANO has the same size, so its timings carry over)."""
    import torch

    from dwm_data.fixtures.mano import write_mano_models
    from dwm_data.hands.mano import ManoHands

    write_mano_models(mano_dir)
    hands = ManoHands(mano_dir)
    phase = torch.linspace(0, 1, frames)[:, None]
    vertices = []
    for sign, side in ((-1.0, "left"), (1.0, "right")):
        transl = torch.cat([sign * 0.1 + 0.05 * phase, 0.02 + 0 * phase, 0.45 + 0 * phase], 1)
        orient = torch.tensor([[0.0, 0.0, -sign * 1.57]]).repeat(frames, 1)
        pose = 0.3 * phase.repeat(1, 45)
        with torch.no_grad():
            out = hands(side, orient, pose, torch.zeros(frames, 10), transl)
        vertices.append(out.vertices.numpy())
    return np.stack(vertices, axis=1), (hands.faces["left"], hands.faces["right"]), hands


def main(quick: bool = False) -> list[tuple[str, str]]:
    from dwm_data.hands.backend import landmark_track
    from dwm_data.hands.landmarks import MediaPipeHands
    from dwm_data.hands.render import render_mesh, render_skeleton
    from dwm_data.video import read_clip

    video = load_recipe("dwm").video
    frames = 17 if quick else video.frames
    width, height = video.width, video.height
    codecs = load_recipe("dwm").codecs.to_codecs()
    k = Intrinsics.from_fov(width, height, 60)
    with tempfile.TemporaryDirectory(prefix="dwm-bench-hands-") as tmp:
        if REAL_CLIP.is_file():
            clip, source = REAL_CLIP, "real clip pour_coke.mp4"
        else:
            from dwm_data.fixtures.mano import write_mano_models
            from dwm_data.fixtures.taste import demo_clip

            write_mano_models(Path(tmp) / "demo-mano")
            clip = demo_clip(Path(tmp) / "clip", Path(tmp) / "demo-mano", 3 * frames)
            source = "demo clip (no hands MediaPipe can see)"
        (clip_frames, _), decode_s = _timed(
            lambda: read_clip(clip, frames, video.rate, width, height, video.resize)
        )
        detector = MediaPipeHands()
        track, estimate_s = _timed(lambda: landmark_track(clip_frames, detector, k))
        vertices, faces, hands = two_hands(Path(tmp) / "mano", frames)
        from dwm_data.hands.fit import fit_mano

        _, fit_s = _timed(lambda: fit_mano(track, hands, k))
        # A worker makes its GL context and llvmpipe compiles its shaders once, not per clip.
        render_mesh(vertices[:1], faces, k, width, height)
        # Under half a second and at the mercy of the other processes: the median of three.
        renders = [_timed(lambda: render_mesh(vertices, faces, k, width, height)) for _ in range(3)]
        hand_video, mesh_s = sorted(renders, key=lambda r: r[1])[1]
        _, skeleton_s = _timed(lambda: render_skeleton(track, k, width, height))
        from dwm_data.video import encode

        static = np.repeat(clip_frames[:1], frames, axis=0)
        _, encode_s = _timed(
            lambda: [
                encode(f, video.rate, codecs[n])
                for n, f in (("video", clip_frames), ("static", static), ("hand", hand_video))
            ]
        )
    total = decode_s + estimate_s + mesh_s + encode_s
    mesh_total = total + fit_s
    found = int(track.valid.any(axis=1).sum())
    return [
        ("input", f"{source}, {frames} frames at {width}x{height}"),
        ("hands found (MediaPipe)", f"{found} of {frames} frames"),
        ("decode", f"{decode_s:.2f} s/clip ({decode_s / total:.0%})"),
        ("estimate (MediaPipe)", f"{frames / estimate_s:.1f} frames/s ({estimate_s / total:.0%})"),
        ("render mesh, 2 hands", f"{frames / mesh_s:.1f} frames/s ({mesh_s / total:.0%})"),
        ("render skeleton", f"{frames / skeleton_s:.0f} frames/s"),
        ("MANO fit (mano-fit)", f"{fit_s:.2f} s/clip ({found} hand-frames)"),
        ("encode 3 videos", f"{encode_s:.2f} s/clip"),
        ("skeleton render vs MediaPipe", f"{estimate_s / skeleton_s:.0f}x faster (target >= 10x)"),
        (
            "mesh render vs MediaPipe + MANO fit",
            f"{(estimate_s + fit_s) / mesh_s:.1f}x faster (target >= 10x)",
        ),
        ("mesh render vs MediaPipe alone", f"{estimate_s / mesh_s:.1f}x faster"),
        ("end to end, skeleton, 1 process", f"{60 / (total - mesh_s + skeleton_s):.1f} clips/min"),
        ("end to end, mano-fit mesh, 1 process", f"{60 / mesh_total:.1f} clips/min"),
    ]
