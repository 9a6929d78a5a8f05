"""build-ego's cameras: structure from motion on the generated walk (true path known) and on the
official real-world interaction clips (49 frames, 8 fps), with its cost on this machine.

The real clips' actor masks are the official hand videos' meshes, dilated, so the figures
measure the reconstruction alone, not the hand detector.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

REAL_CLIPS = ("00013", "00017", "00039")
REAL_ROOT = Path("../shared/data/dwm_realworld/realworld_dynamic")
WORK_WIDTH = 480


def _walk_rows(workdir: Path) -> list[tuple[str, str]]:
    from dwm_data.ego.masks import actor_masks
    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.ego.trajectory import path_error
    from dwm_data.fixtures.ego import SIZE, write_ego_video
    from dwm_data.hands.track import HandTrack
    from dwm_data.video import decode

    video = write_ego_video(workdir / "walk", 2.0)
    picks = list(range(7, 25, 2))
    frames = decode(video)[picks]
    with np.load(video.with_suffix(".poses.npz")) as data:
        truth = data["cam_to_world"][picks]
    track = HandTrack.from_npz(video.with_suffix(".hands.npz").read_bytes()).select(picks)
    keep = ~actor_masks(track, *SIZE, 0.3)
    cams = reconstruct(frames, keep, workdir / "walk-sfm", SfmSettings())
    error = path_error(cams.cam_to_world, truth)
    return [
        ("walk: registered frames", f"{cams.report['registered_frames']}/{len(picks)}"),
        ("walk: trajectory error / path length", f"{100 * error.relative:.2f} %"),
        ("walk: max relative rotation error", f"{error.max_rotation_deg:.2f} deg"),
        ("walk: SfM seconds", f"{cams.report['seconds']:.1f}"),
    ]


def _real_rows(stem: str, workdir: Path) -> list[tuple[str, str]]:
    import cv2

    from dwm_data.ego.options import SfmSettings
    from dwm_data.ego.sfm import reconstruct
    from dwm_data.errors import UnitError
    from dwm_data.video import decode

    video, hands = (decode(REAL_ROOT / kind / f"{stem}.mp4") for kind in ("videos", "videos_hands"))
    height = int(round(video.shape[1] * WORK_WIDTH / video.shape[2]))
    size = (WORK_WIDTH, height)
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    actor = [
        cv2.dilate(
            cv2.resize((h.max(-1) > 30).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST),
            kernel,
        )
        for h in hands
    ]
    keep = ~np.stack(actor).astype(bool)
    started = time.time()
    try:
        cams = reconstruct(frames, keep, workdir / stem, SfmSettings())
    except UnitError as exc:
        return [
            (f"{stem}: SfM", f"failed: {exc}"),
            (f"{stem}: SfM seconds", f"{time.time() - started:.1f}"),
        ]
    report = cams.report
    return [
        (f"{stem}: registered frames", f"{report['registered_frames']}/{len(frames)}"),
        (f"{stem}: mean reprojection error", f"{report['reprojection_error_px']:.2f} px"),
        (f"{stem}: focal at {WORK_WIDTH} px wide", f"{cams.intrinsics.fx:.1f} px"),
        (f"{stem}: SfM seconds", f"{report['seconds']:.1f}"),
    ]


def main(quick: bool = False) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = _walk_rows(Path(tmp))
        for stem in REAL_CLIPS[:1] if quick else REAL_CLIPS:
            if (REAL_ROOT / "videos" / f"{stem}.mp4").is_file():
                rows += _real_rows(stem, Path(tmp))
    return rows
