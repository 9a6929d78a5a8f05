"""The two condition videos of a simulated clip, and the folder a simulation leaves behind.

The static video is the scene along the path; the hand video the motion along the same path,
drawn by `render_hands` (official colours and lighting), or all black for navigation only, as
the official model expects it (it has seen frames without hands, never zeroed hand latents).
A result folder is written whole under a temporary name and renamed, so a failure leaves
nothing half written, and holds the triplet's members as a sample does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import DwmDataError
from dwm_data.simulate.motion import Motion
from dwm_data.simulate.paths import CameraPath, write_nerfstudio
from dwm_data.simulate.scene import Scene, to_scene_frame
from dwm_data.store import written_whole

RESULT_MARK = "simulate.json"  # a folder holding it is a result `--overwrite` may replace


@dataclass
class Conditions:
    static: np.ndarray  # (F, H, W, 3) uint8
    hand: np.ndarray
    path: CameraPath
    motion: Motion | None  # None: navigation only
    record: dict[str, Any]


def static_video(scene: Scene, path: CameraPath, up: str, scale: float) -> np.ndarray:
    if scale <= 0:
        raise DwmDataError(f"scene scale must be positive, got {scale}")
    return scene.render(to_scene_frame(path.poses, up, scale), path.intrinsics)


def hand_video(motion: Motion | None, path: CameraPath) -> np.ndarray:
    """The motion drawn as every builder draws its track; all black without one."""
    k = path.intrinsics
    if motion is None:
        return np.zeros((len(path.poses), k.height, k.width, 3), np.uint8)
    from dwm_data.hands.render import render_hands

    return render_hands(motion.track, motion.faces, k, k.width, k.height)


def check_result_folder(out: Path, overwrite: bool, mark: str = RESULT_MARK) -> None:
    """Refuse a folder that is not empty, unless it is an earlier result (it holds `mark`) and
    `overwrite` is given: nothing else is ever deleted."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    earlier = (out / mark).is_file()
    if earlier and overwrite:
        return
    what = "an earlier result (pass --overwrite)" if earlier else "not a result of this command"
    raise DwmDataError(f"{out} exists and is {what}")


def write_result(
    out: Path,
    videos: dict[str, np.ndarray],
    conditions: Conditions,
    prompt: str,
    record: dict[str, Any],
    fps: Fraction,
    codecs: dict[str, Any],
    overwrite: bool,
) -> list[str]:
    """`static.mp4`, `hand.mp4` (and `video.mp4` when sampled), `preview.mp4` (the videos side
    by side) and `preview.png` (its middle and last frames), `txt`, `camera.npy`,
    `camera_path.json` (nerfstudio, to render the same path elsewhere), `hands.npz` and
    `simulate.json`, written to a temporary folder renamed to `out`; returns the files."""
    from PIL import Image

    from dwm_data.video import Codec, encode

    check_result_folder(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(out) as partial:
        for name, frames in videos.items():
            (partial / f"{name}.mp4").write_bytes(encode(frames, fps, codecs[name]))
        side = np.concatenate(list(videos.values()), axis=2)
        (partial / "preview.mp4").write_bytes(encode(side, fps, Codec(preset="veryfast")))
        still = np.concatenate([side[len(side) // 2], side[-1]], axis=0)
        Image.fromarray(still).save(partial / "preview.png")
        (partial / "txt").write_text(prompt)
        np.save(partial / "camera.npy", conditions.path.poses.astype(np.float32))
        write_nerfstudio(
            conditions.path.poses, conditions.path.intrinsics, fps, partial / "camera_path.json"
        )
        if conditions.motion is not None:
            (partial / "hands.npz").write_bytes(conditions.motion.track.to_npz())
        (partial / RESULT_MARK).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return sorted(p.name for p in out.iterdir())
