"""Cameras the user brings (`--poses`) instead of structure from motion.

Two formats, per video, in the `--poses` folder:
- `<stem>.poses.npz`: `cam_to_world` (N, 4, 4), OpenCV axes, one per source frame of the video;
  `K` (3, 3) with pixel centres at integers; `width`, `height`, the frame size K refers to.
  MPS, ViPE or MegaSaM outputs convert to it in a few lines.
- `<stem>/`: a COLMAP model (cameras and images, `.bin` or `.txt`) of the video's frames, one
  PINHOLE or SIMPLE_PINHOLE camera; each image's name holds its source frame number
  (`frame_000123.jpg`), its last number being taken.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.ego.sfm import Cameras, colmap_intrinsics, rigid_matrix
from dwm_data.errors import UnitError
from dwm_data.extras import require


def given_cameras(
    folder: Path, stem: str, source_frames: list[int], width: int, height: int
) -> Cameras:
    """The cameras of `source_frames`, with intrinsics at width x height (the working frames)."""
    npz, model = folder / f"{stem}.poses.npz", folder / stem
    if npz.is_file():
        intrinsics, poses = _from_npz(npz)
        origin = npz.name
    elif model.is_dir():
        intrinsics, poses = _from_colmap(model)
        origin = f"{model.name}/ (COLMAP model)"
    else:
        raise UnitError("cameras", f"--poses: neither {npz.name} nor {model.name}/ in {folder}")
    missing = [f for f in source_frames if f not in poses]
    if missing:
        raise UnitError("cameras", f"--poses {origin} has no camera for source frame {missing[0]}")
    if abs(intrinsics.width / intrinsics.height - width / height) > 0.01:
        raise UnitError(
            "cameras",
            f"--poses {origin} is for {intrinsics.width}x{intrinsics.height} frames, the video's "
            f"aspect is {width}x{height}",
        )
    cam_to_world = np.stack([poses[f] for f in source_frames])
    return Cameras(
        intrinsics.scaled(width, height),
        cam_to_world,
        np.zeros((0, 3)),
        np.zeros((0, 3), np.uint8),
        {"origin": "given", "file": origin, "registered_frames": len(source_frames)},
    )


def _from_npz(path: Path) -> tuple[Intrinsics, dict[int, np.ndarray]]:
    try:
        with np.load(path) as data:
            poses, K = data["cam_to_world"], data["K"]
            width, height = int(data["width"]), int(data["height"])
    except (OSError, ValueError, KeyError) as exc:
        raise UnitError(
            "cameras", f"--poses {path.name}: needs cam_to_world, K, width, height ({exc})"
        ) from exc
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or K.shape != (3, 3):
        raise UnitError("cameras", f"--poses {path.name}: cam_to_world must be (N,4,4) and K (3,3)")
    intrinsics = Intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)
    return intrinsics, dict(enumerate(poses.astype(np.float64)))


def _from_colmap(folder: Path) -> tuple[Intrinsics, dict[int, np.ndarray]]:
    pycolmap = require("pycolmap", "ego")
    try:
        model = pycolmap.Reconstruction(str(folder))
    except Exception as exc:  # pycolmap raises its own error types for unreadable models
        raise UnitError("cameras", f"--poses {folder.name}/: not a COLMAP model ({exc})") from exc
    if model.num_cameras() != 1:
        raise UnitError(
            "cameras", f"--poses {folder.name}/ has {model.num_cameras()} cameras, not 1"
        )
    poses = {}
    for image in model.images.values():
        numbers = re.findall(r"\d+", Path(image.name).stem)
        if image.has_pose and numbers:
            poses[int(numbers[-1])] = np.linalg.inv(rigid_matrix(image.cam_from_world()))
    camera = next(iter(model.cameras.values()))
    return colmap_intrinsics(camera), poses
