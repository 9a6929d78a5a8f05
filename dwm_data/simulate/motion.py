"""Hand motions read from files, retimed to the clip and placed along its camera path.

Motions come as:
- `hands.npz` as the builders write it (keypoints in the camera frame of its own clip, MANO
  parameters when the backend had them);
- MANO parameters per frame: an `.npz` with `global_orient` (F,2,3), `hand_pose` (F,2,45),
  `betas` (F,2,10), `transl` (F,2,3), side 0 left and 1 right, NaN (or `valid` False) where a
  hand is absent; needs the MANO model files;
- keypoints per frame: a `.npy` (F,2,21,3) or an `.npz` with `keypoints` (and `valid`), metres,
  MANO/OpenPose order;
- a built sample (`--from-sample SHARDS KEY`): its `hands.npz`, its `camera.npy` and its fps.

Placement: `ego` keeps the arrays in the camera frame (the hands move with the camera, as a
wearer's do); `world` reads them as world coordinates (metres, z up) and projects them into each
camera of the path. Camera-frame sources (`hands.npz`, a sample) are lifted to the world with
their own cameras (the sample's `camera.npy`, or `motion_poses`) first. Frames are picked at the
recipe's fps as the builders pick them (`video.select_frames`); a motion too short for the path
is refused. With MANO files the hands are meshes (from the parameters, or fitted to keypoints),
else skeletons, as `render_hands` draws every builder's tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dwm_data.cameras import project
from dwm_data.errors import DwmDataError, UnitError
from dwm_data.hands.track import MANO_KEYS, HandTrack
from dwm_data.simulate.paths import CameraPath, check_rigid

Placement = Literal["ego", "world"]


@dataclass
class RawMotion:
    """A motion as read, before retiming: per-frame arrays in their own frame."""

    keypoints: np.ndarray  # (N, 2, 21, 3)
    valid: np.ndarray  # (N, 2)
    mano: dict[str, np.ndarray] = field(default_factory=dict)  # (N, 2, ...)
    camera_frame: bool = True  # keypoints are in the source clip's camera frame
    poses: np.ndarray | None = None  # (N, 4, 4) the source cameras, for world placement
    fps: Fraction | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.valid)


@dataclass
class Motion:
    """Hands along the path: a track in the path's cameras and the mesh faces (None:
    skeletons)."""

    track: HandTrack
    faces: tuple[np.ndarray, np.ndarray] | None
    record: dict[str, Any]


def read_motion(path: Path) -> RawMotion:
    """A motion file by its content (see the module's docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DwmDataError(f"hand motion {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            return _keypoints(np.load(path, allow_pickle=False), None, path)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError) as exc:
        raise DwmDataError(f"{path} is not a .npy/.npz motion: {exc}") from exc
    if "keypoints_cam" in arrays:
        try:
            track = HandTrack.from_npz(path.read_bytes())
        except (ValueError, KeyError) as exc:
            raise DwmDataError(f"{path} is not a valid hands.npz: {exc}") from exc
        return _from_track(track, str(path), "hands.npz")
    if "hand_pose" in arrays:
        return _mano_file(arrays, path)
    if "keypoints" in arrays:
        return _keypoints(arrays["keypoints"], arrays.get("valid"), path)
    raise DwmDataError(
        f"{path}: not a motion (hands.npz keypoints_cam, MANO hand_pose ..., or keypoints)"
    )


def motion_from_sample(shards: list[Path], key: str) -> RawMotion:
    """The hands of a built sample, with its cameras and fps (for world placement)."""
    from dwm_data.store import read_samples

    sample = next((s for s in read_samples(shards, validate=False) if s.key == key), None)
    if sample is None:
        raise DwmDataError(f"no sample with key {key} in the shards")
    if sample.hands is None:
        raise DwmDataError(f"sample {key} has no hands.npz")
    raw = _from_track(HandTrack.from_npz(sample.hands), key, "sample")
    raw.fps = Fraction(str(sample.meta.get("fps", "8")))
    if sample.camera is not None:
        raw.poses = np.asarray(sample.camera, np.float64)
    raw.record["shards"] = [str(s) for s in shards]
    return raw


def _from_track(track: HandTrack, name: str, kind: str) -> RawMotion:
    mano = {k: v for k, v in track.mano.items() if k in MANO_KEYS}
    return RawMotion(
        track.keypoints_cam.astype(np.float64),
        track.valid.copy(),
        mano if len(mano) == len(MANO_KEYS) else {},
        record={"file": name, "format": kind},
    )


def _keypoints(keypoints: np.ndarray, valid: np.ndarray | None, path: Path) -> RawMotion:
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 4 or keypoints.shape[1:] != (2, 21, 3):
        raise DwmDataError(f"{path}: keypoints must be (F, 2, 21, 3), got {keypoints.shape}")
    present = np.isfinite(keypoints).all(axis=(2, 3))
    valid = present if valid is None else np.asarray(valid, bool) & present
    return RawMotion(
        keypoints, valid, camera_frame=False, record={"file": str(path), "format": "keypoints"}
    )


def _mano_file(arrays: dict[str, np.ndarray], path: Path) -> RawMotion:
    missing = [k for k in MANO_KEYS if k not in arrays]
    if missing:
        raise DwmDataError(f"{path}: MANO parameters lack {', '.join(missing)}")
    mano = {k: np.asarray(arrays[k], np.float64) for k in MANO_KEYS}
    frames = len(mano["hand_pose"])
    sizes = {"global_orient": 3, "hand_pose": 45, "betas": 10, "transl": 3}
    for name, size in sizes.items():
        if mano[name].shape != (frames, 2, size):
            raise DwmDataError(
                f"{path}: {name} must be ({frames}, 2, {size}), got {mano[name].shape}"
            )
    present = np.stack([np.isfinite(v).all(axis=2) for v in mano.values()]).all(axis=0)
    valid = present & np.asarray(arrays.get("valid", present), bool)
    keypoints = np.full((frames, 2, 21, 3), np.nan)  # filled from the parameters (MANO files)
    return RawMotion(
        keypoints, valid, mano, camera_frame=False, record={"file": str(path), "format": "mano"}
    )


def place_motion(
    raw: RawMotion,
    path: CameraPath,
    fps: Fraction,
    placement: Placement,
    mano_dir: Path | None,
    motion_fps: Fraction | None = None,
    motion_poses: np.ndarray | None = None,
) -> Motion:
    """The motion retimed to the path's frames at `fps` and seen from its cameras."""
    from dwm_data.video import select_frames

    frames = len(path.poses)
    rate = Fraction(motion_fps) if motion_fps else (raw.fps or Fraction(fps))
    times = [Fraction(i) / rate for i in range(raw.frames)]
    try:
        picks = np.array(select_frames(times, Fraction(raw.frames) / rate, fps, frames))
    except UnitError as exc:
        raise DwmDataError(
            f"{raw.record['file']}: the motion is {raw.frames} frames at {float(rate):g} fps "
            f"({float(raw.frames / rate):.3f} s); the path needs {frames} frames at {float(fps):g} fps "
            f"({exc.message})"
        ) from exc
    hands = _mano_hands(raw, mano_dir)
    keypoints, vertices = _points(raw, picks, hands)
    valid = raw.valid[picks].copy()
    if placement == "world":
        keypoints, vertices = _to_path_cameras(raw, picks, path, keypoints, vertices, motion_poses)
    # a hand is drawn where it is finite and wholly in front of the camera
    valid &= np.isfinite(keypoints).all(axis=(2, 3)) & (np.nan_to_num(keypoints[..., 2]) > 0).all(
        axis=2
    )
    keypoints[~valid] = np.nan
    if vertices is not None:
        vertices[~valid] = np.nan
    pixels = project(keypoints, path.intrinsics)
    keep_mano = placement == "ego" and raw.mano  # world placement moves the hands: refit
    track = HandTrack(
        valid,
        keypoints.astype(np.float32),
        pixels.astype(np.float32),
        mano={k: v[picks].astype(np.float32) for k, v in raw.mano.items()} if keep_mano else {},
        vertices=None if vertices is None else vertices.astype(np.float32),
    )
    faces = None
    representation = "skeleton"
    if hands is not None:
        faces = (hands.faces["left"], hands.faces["right"])
        representation = "mesh"
        if track.vertices is None:  # keypoints only: MANO fitted to them, as mano-fit does
            from dwm_data.hands.fit import fit_mano

            track = fit_mano(track, hands, path.intrinsics)
            representation = "mesh (mano-fit)"
    record = {
        **raw.record,
        "frames_read": raw.frames,
        "motion_fps": str(rate),
        "source_frames": picks.tolist(),
        "placement": placement,
        "representation": representation,
        "mano_dir": None if mano_dir is None else str(mano_dir),
        "hand_frames": int(track.valid.any(axis=1).sum()),
    }
    return Motion(track, faces, record)


def _mano_hands(raw: RawMotion, mano_dir: Path | None):
    """MANO layers when the motion can use them: always for MANO files (which need them), for
    the others when a folder is given."""
    if mano_dir is None and raw.record["format"] == "mano":
        from dwm_data.hands.mano import mano_paths

        mano_paths(None)  # the one line that says what is missing and how to get it
    if mano_dir is None:
        return None
    from dwm_data.hands.mano import ManoHands

    return ManoHands(mano_dir)


def _points(raw: RawMotion, picks: np.ndarray, hands) -> tuple[np.ndarray, np.ndarray | None]:
    """Keypoints (and vertices, from the MANO parameters when there are layers) at the picks."""
    keypoints = raw.keypoints[picks].copy()
    if hands is None or not raw.mano:
        return keypoints, None
    import torch

    vertices = np.full((len(picks), 2, 778, 3), np.nan)
    for side_index, side in enumerate(("left", "right")):
        rows = np.nonzero(raw.valid[picks, side_index])[0]
        if len(rows) == 0:
            continue
        args = {
            k: torch.tensor(raw.mano[k][picks[rows], side_index], dtype=torch.float32)
            for k in MANO_KEYS
        }
        with torch.no_grad():
            out = hands(side, **args)
        vertices[rows, side_index] = out.vertices.numpy()
        keypoints[rows, side_index] = out.keypoints.numpy()
    return keypoints, vertices


def _to_path_cameras(
    raw: RawMotion,
    picks: np.ndarray,
    path: CameraPath,
    keypoints: np.ndarray,
    vertices: np.ndarray | None,
    motion_poses: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """World placement: camera-frame arrays lifted by their own cameras, then every point
    brought into the frame of the path's camera at the same frame."""
    lift = None
    if raw.camera_frame:
        sources = raw.poses if motion_poses is None else motion_poses
        if sources is None:
            raise DwmDataError(
                f"{raw.record['file']} holds hands in its own camera frame: world placement needs "
                "its cameras (--motion-poses camera.npy, or --from-sample)"
            )
        if len(sources) != raw.frames:
            raise DwmDataError(
                f"the motion's cameras are {len(sources)} poses for {raw.frames} hand frames"
            )
        check_rigid(sources, "motion cameras")
        lift = sources[picks]
    world_to_path = np.linalg.inv(path.poses)
    transform = world_to_path if lift is None else world_to_path @ lift

    def move(points: np.ndarray) -> np.ndarray:  # (F, 2, P, 3) by (F, 4, 4)
        moved = np.einsum("fij,fspj->fspi", transform[:, :3, :3], points)
        return moved + transform[:, None, None, :3, 3]

    return move(keypoints), None if vertices is None else move(vertices)
