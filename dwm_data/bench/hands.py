"""build-taste hands: speed of one clip (`bench hands`), and quality on real egocentric clips
against the official hand videos (`bench hands-real`).

Speed: is rendering ever the limit? The target is rendering at least 10x faster than
estimation. All figures come from one run on the same clip (the real fixed-camera clip when
../shared/data is there, else the demo's rendered clip), on this machine's CPU.

Quality: the three real clips of DWM's `realworld_dynamic` release (Aria, 720x480, 8 fps, 49
frames) come with the official hand videos (HaMeR meshes); our hand video of each clip, as
`build-taste` makes it, is compared with the official one (`hands.compare`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.hands.compare import HandVideoScores
from dwm_data.recipe import load_recipe

REALWORLD = Path(__file__).resolve().parents[3] / "shared/data/dwm_realworld"
REAL_CLIP = REALWORLD / "realworld_fixed/pour_coke.mp4"
DYNAMIC = REALWORLD / "realworld_dynamic"
DYNAMIC_CLIPS = ("00013", "00017", "00039")
HFOV_DEG = 60.0  # build-taste's default assumed field of view


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
    from dwm_data.hands.backend import estimate_hands, make_backend
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
        backend = make_backend("mediapipe")
        # as build-taste estimates: detection, clean-up and following of lost hands
        estimate, estimate_s = _timed(lambda: estimate_hands(backend, clip_frames, k))
        track = estimate.track
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
        ("hands found", f"{found} of {frames} frames"),
        ("decode", f"{decode_s:.2f} s/clip ({decode_s / total:.0%})"),
        ("estimate (MediaPipe, clean-up, following)", f"{frames / estimate_s:.1f} frames/s"),
        ("render mesh, 2 hands", f"{frames / mesh_s:.1f} frames/s ({mesh_s / total:.0%})"),
        ("render skeleton", f"{frames / skeleton_s:.0f} frames/s"),
        ("MANO fit (mano-fit)", f"{fit_s:.2f} s/clip ({found} hand-frames)"),
        ("encode 3 videos", f"{encode_s:.2f} s/clip"),
        ("skeleton render vs estimation", f"{estimate_s / skeleton_s:.0f}x faster (target >= 10x)"),
        (
            "mesh render vs estimation + MANO fit",
            f"{(estimate_s + fit_s) / mesh_s:.1f}x faster (target >= 10x)",
        ),
        ("mesh render vs estimation alone", f"{estimate_s / mesh_s:.1f}x faster"),
        ("end to end, skeleton, 1 process", f"{60 / (total - mesh_s + skeleton_s):.1f} clips/min"),
        ("end to end, mano-fit mesh, 1 process", f"{60 / mesh_total:.1f} clips/min"),
    ]


@dataclass(frozen=True)
class RealClipScores:
    """One real clip: frames with hands we found, detection speed, and our skeleton and mesh
    (MANO fitted to the landmarks) videos against the official hand video."""

    frames: int
    found: int
    detect_fps: float
    skeleton: HandVideoScores | None
    mesh: HandVideoScores | None


def score_real_clip(video: Path, official: Path | None, mano_dir: Path) -> RealClipScores:
    """Hands of `video` estimated as build-taste does (official recipe, MediaPipe landmarks,
    clean-up), drawn as skeletons and as meshes (`mano-fit` on the MANO in `mano_dir`), and
    compared with the `official` hand video when there is one."""
    from dwm_data.hands.backend import estimate_hands, landmark_track, make_backend
    from dwm_data.hands.compare import compare_hand_videos
    from dwm_data.hands.render import render_mesh, render_skeleton
    from dwm_data.video import read_clip

    recipe = load_recipe("dwm").video
    size = (recipe.width, recipe.height)
    frames, _ = read_clip(video, recipe.frames, recipe.rate, *size, recipe.resize)
    k = Intrinsics.from_fov(*size, HFOV_DEG)
    skeleton_backend = make_backend("mediapipe")
    landmarks, detect_s = _timed(lambda: landmark_track(frames, skeleton_backend.detector, k))
    skeleton, clean_s = _timed(
        lambda: estimate_hands(skeleton_backend, frames, k, landmarks=landmarks, follow=True)
    )
    detect_s += clean_s  # estimation: detection, clean-up and following
    found = int(skeleton.track.valid.any(axis=1).sum())
    scores: dict[str, HandVideoScores | None] = {"skeleton": None, "mesh": None}
    if official is not None:
        reference, _ = read_clip(official, recipe.frames, recipe.rate, *size, recipe.resize)
        mesh_backend = make_backend("mano-fit", mano_dir=mano_dir)
        mesh = estimate_hands(mesh_backend, frames, k, landmarks=landmarks, follow=True)
        videos = {
            "skeleton": render_skeleton(skeleton.track, skeleton.intrinsics, *size),
            "mesh": render_mesh(mesh.track.vertices, mesh_backend.faces, mesh.intrinsics, *size),
        }
        scores = {name: compare_hand_videos(v, reference) for name, v in videos.items()}
    return RealClipScores(len(frames), found, len(frames) / detect_s, **scores)


def real(quick: bool = False) -> list[tuple[str, str]]:
    """Per real clip: recall, precision, side agreement (skeleton and mesh), mesh IoU, speed."""
    from dwm_data.errors import DwmDataError
    from dwm_data.fixtures.mano import write_mano_models

    clips = [
        (DYNAMIC / "videos" / f"{c}.mp4", DYNAMIC / "videos_hands" / f"{c}.mp4")
        for c in DYNAMIC_CLIPS
    ]
    clips = clips[:1] if quick else clips
    missing = [str(p) for pair in clips for p in pair if not p.is_file()]
    if missing:
        raise DwmDataError(f"bench hands-real: the real clips are missing (first: {missing[0]})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dwm-bench-hands-real-") as tmp:
        write_mano_models(Path(tmp))
        for video, official in clips:
            r = score_real_clip(video, official, Path(tmp))
            rows.append(
                (
                    f"{video.stem}: frames with hands",
                    f"{r.found} of {r.frames} (official {r.mesh.official_frames}), "
                    f"detection {r.detect_fps:.1f} frames/s",
                )
            )
            for style, scores in (("skeleton", r.skeleton), ("mesh", r.mesh)):
                rows.append((f"{video.stem}: {style}", _quality(scores)))
        if not quick and REAL_CLIP.is_file():
            r = score_real_clip(REAL_CLIP, None, Path(tmp))
            rows.append(
                (
                    f"{REAL_CLIP.stem}: frames with hands",
                    f"{r.found} of {r.frames}, detection {r.detect_fps:.1f} frames/s",
                )
            )
    return rows


def _quality(s: HandVideoScores) -> str:
    return (
        f"recall {s.recall:.2f}, precision {s.precision:.2f} "
        f"({s.precision_official_frames:.2f} on official hand frames), "
        f"sides {s.side_agreement:.2f}, IoU {s.iou:.2f}"
    )
