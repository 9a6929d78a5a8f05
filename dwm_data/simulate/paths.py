"""Camera paths in three forms, all read into OpenCV camera-to-world poses at the recipe's frames.

- `camera.npy`: (N, 4, 4) OpenCV camera-to-world, as the builders write it; frame i is at
  i / path_fps (default: the recipe's fps).
- nerfstudio's `camera_path.json` (what its viewer exports and `ns-render` reads): flattened
  row-major `camera_to_world` in nerfstudio's OpenGL camera axes (x right, y up, z back), a
  vertical `fov` in degrees, `fps`; frame i is at i / fps.
- keyframes (`.yaml`, `.yml` or a `.json` with a `keyframes` list): a few poses, each an OpenCV
  `camera_to_world` or a `position` with a `look_at` (world +z up), at `time` seconds (or spread
  evenly over the clip), plus `fov` (horizontal degrees) or `intrinsics`.

Every form is resampled at t = i / fps for the recipe's frames: rotations by slerp, positions by
a cubic spline through the poses, so a path given at the recipe's own times comes back unchanged
and a coarse one moves smoothly. Poses must be finite and rigid (a rotation, no scale or shear).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.errors import DwmDataError

# nerfstudio / OpenGL camera axes (x right, y up, z back) <-> OpenCV (x right, y down, z forward)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
WORLD_UP = np.array([0.0, 0.0, 1.0])  # the toolkit's world is z-up (`scene.py` turns scenes so)
DEFAULT_FOV = 90.0  # horizontal degrees, the official TRUMANS camera
RIGID_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CameraPath:
    """The clip's cameras: poses (F, 4, 4) OpenCV camera-to-world in the world (metres, z up),
    intrinsics at the recipe's size, and what was read, for the result's `json`."""

    poses: np.ndarray
    intrinsics: Intrinsics
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Read:
    times: np.ndarray | None  # seconds per pose; None: at the path's fps
    poses: np.ndarray
    fov: float | None = None  # horizontal degrees
    vertical_fov: float | None = None
    intrinsics: Intrinsics | None = None
    fps: Fraction | None = None
    kind: str = ""


def load_path(
    path: Path,
    frames: int,
    fps: Fraction,
    width: int,
    height: int,
    fov: float | None = None,
    path_fps: Fraction | None = None,
) -> CameraPath:
    """The path at `frames` frames of `fps`, with intrinsics at width x height: `fov`
    (horizontal degrees) when given, else the file's, else the official 90 degrees."""
    path = Path(path)
    if not path.is_file():
        raise DwmDataError(f"camera path {path} does not exist")
    read = _read(path, frames, Fraction(fps))
    check_rigid(read.poses, str(path))
    rate = Fraction(path_fps) if path_fps else (read.fps or Fraction(fps))
    times = read.times if read.times is not None else np.arange(len(read.poses)) / float(rate)
    wanted = np.arange(frames) / float(fps)
    if len(read.poses) > 1 and np.any(np.diff(times) <= 0):
        raise DwmDataError(f"{path}: pose times must increase")
    if len(read.poses) > 1 and wanted[-1] > times[-1] + 1e-6:  # one pose: a still camera
        raise DwmDataError(
            f"{path}: the path lasts {times[-1]:.3f} s ({len(read.poses)} poses), the clip "
            f"needs {wanted[-1]:.3f} s ({frames} frames at {float(fps):g} fps)"
        )
    poses = resample(times, read.poses, wanted)
    intrinsics = _intrinsics(read, fov, width, height)
    record = {
        "file": str(path),
        "format": read.kind,
        "poses_read": len(read.poses),
        "path_fps": None if read.times is not None else str(rate),
        "intrinsics": intrinsics.as_dict(),
        "fov_source": "option" if fov is not None else ("file" if _has_camera(read) else "default"),
    }
    return CameraPath(poses.astype(np.float64), intrinsics, record)


def _has_camera(read: _Read) -> bool:
    return read.fov is not None or read.vertical_fov is not None or read.intrinsics is not None


def _intrinsics(read: _Read, fov: float | None, width: int, height: int) -> Intrinsics:
    if fov is not None:
        return Intrinsics.from_fov(width, height, fov)
    if read.intrinsics is not None:
        return read.intrinsics.scaled(width, height)
    if read.vertical_fov is not None:  # nerfstudio: the focal follows the height
        focal = (height / 2) / math.tan(math.radians(read.vertical_fov) / 2)
        return Intrinsics(focal, focal, width / 2 - 0.5, height / 2 - 0.5, width, height)
    return Intrinsics.from_fov(width, height, read.fov or DEFAULT_FOV)


def _read(path: Path, frames: int, fps: Fraction) -> _Read:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _Read(None, read_poses(path), kind="camera.npy")
    if suffix not in (".yaml", ".yml", ".json"):
        raise DwmDataError(
            f"{path}: unknown camera path format (camera.npy, nerfstudio camera_path.json, "
            "keyframes .yaml/.json)"
        )
    import yaml

    try:  # YAML reads JSON too, but JSON's own parser gives the clearer message
        text = path.read_text()
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DwmDataError(f"{path} cannot be parsed: {str(exc).splitlines()[0]}") from exc
    data = _mapping(data, path)
    if "camera_path" in data:
        return _nerfstudio(data, path)
    if "keyframes" in data:
        return _keyframes(data, path, frames, fps)
    raise DwmDataError(f"{path}: a path file holds 'camera_path' (nerfstudio) or 'keyframes'")


def read_poses(path: Path) -> np.ndarray:
    """A camera.npy: (N, 4, 4) OpenCV camera-to-world, checked to be finite and rigid."""
    try:
        poses = _as_poses(np.load(path, allow_pickle=False), str(path))
    except (ValueError, OSError) as exc:
        raise DwmDataError(f"{path} is not a (N, 4, 4) .npy array: {exc}") from exc
    check_rigid(poses, str(path))
    return poses


def _mapping(data: Any, path: Path) -> dict:
    if not isinstance(data, dict):
        raise DwmDataError(f"{path}: expected a mapping at the top")
    return data


def _as_poses(array: Any, what: str) -> np.ndarray:
    poses = np.asarray(array, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(poses) == 0:
        raise DwmDataError(f"{what}: poses must be (N, 4, 4), got {poses.shape}")
    return poses


def _nerfstudio(data: dict, path: Path) -> _Read:
    cameras = data["camera_path"]
    if not cameras:
        raise DwmDataError(f"{path}: camera_path is empty")
    try:
        flat = [np.asarray(c["camera_to_world"], np.float64).reshape(4, 4) for c in cameras]
        fovs = {float(c["fov"]) for c in cameras}
    except (KeyError, ValueError) as exc:
        raise DwmDataError(f"{path}: a camera_path entry lacks camera_to_world or fov") from exc
    if len(fovs) > 1:
        raise DwmDataError(f"{path}: the fov changes along the path; one fov per clip")
    poses = _as_poses(flat, str(path)) @ OPENGL_TO_OPENCV
    fps = Fraction(str(data.get("fps", 24))).limit_denominator(1001)
    return _Read(None, poses, vertical_fov=fovs.pop(), fps=fps, kind="nerfstudio")


def _keyframes(data: dict, path: Path, frames: int, fps: Fraction) -> _Read:
    keys = data.get("keyframes")
    if not isinstance(keys, list) or not keys:
        raise DwmDataError(f"{path}: 'keyframes' must be a non-empty list")
    poses = _as_poses([_keyframe_pose(k, path, i) for i, k in enumerate(keys)], str(path))
    timed = ["time" in k for k in keys]
    if any(timed) and not all(timed):
        raise DwmDataError(f"{path}: give every keyframe a time, or none")
    if all(timed):
        times = np.array([float(k["time"]) for k in keys])
    else:  # spread evenly from the clip's first frame to its last
        times = np.linspace(0, (frames - 1) / float(fps), len(keys))
    intrinsics = None
    if "intrinsics" in data:
        try:
            intrinsics = Intrinsics(**data["intrinsics"])
        except TypeError as exc:
            raise DwmDataError(
                f"{path}: intrinsics needs fx, fy, cx, cy, width, height ({exc})"
            ) from exc
    fov = float(data["fov"]) if "fov" in data else None
    return _Read(times, poses, fov=fov, intrinsics=intrinsics, kind="keyframes")


def _keyframe_pose(key: Any, path: Path, index: int) -> np.ndarray:
    if not isinstance(key, dict):
        raise DwmDataError(f"{path}: keyframe {index} is not a mapping")
    try:
        if "camera_to_world" in key:
            return np.asarray(key["camera_to_world"], np.float64).reshape(4, 4)
        if "position" in key and "look_at" in key:
            up = np.asarray(key.get("up", WORLD_UP), np.float64).reshape(3)
            eye = np.asarray(key["position"], float).reshape(3)
            return look_at(eye, np.asarray(key["look_at"], float).reshape(3), up)
    except (ValueError, TypeError) as exc:
        raise DwmDataError(f"{path}: keyframe {index} is malformed ({exc})") from exc
    raise DwmDataError(f"{path}: keyframe {index} needs camera_to_world, or position and look_at")


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = WORLD_UP) -> np.ndarray:
    """OpenCV camera-to-world at `eye` looking at `target`, `up` pointing up in the image."""
    forward = target - eye
    right = np.cross(forward, up)
    if np.linalg.norm(forward) < 1e-9 or np.linalg.norm(right) < 1e-9:
        raise DwmDataError(
            f"look_at from {eye.tolist()} to {target.tolist()} along up is undefined"
        )
    forward /= np.linalg.norm(forward)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = eye
    return pose


def check_rigid(poses: np.ndarray, what: str) -> None:
    """Finite poses whose rotation part is a rotation (orthonormal, det +1) and last row
    (0, 0, 0, 1): a scaled or sheared pose would stretch the scene in the static video and
    misplace the hands, silently."""
    bad = ~np.isfinite(poses).all(axis=(1, 2))
    if bad.any():
        raise DwmDataError(f"{what}: pose {int(np.argmax(bad))} is not finite (NaN or inf)")
    rotation = poses[:, :3, :3]
    error = np.abs(rotation @ rotation.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    flipped = np.linalg.det(rotation) < 0
    row = np.abs(poses[:, 3] - [0, 0, 0, 1]).max(axis=1)
    bad = (error > RIGID_TOLERANCE) | flipped | (row > RIGID_TOLERANCE)
    if bad.any():
        index = int(np.argmax(bad))
        raise DwmDataError(
            f"{what}: pose {index} is not rigid (rotation error {error[index]:.3g}, "
            f"det {np.linalg.det(rotation[index]):.3g}, last row {poses[index, 3].tolist()})"
        )


def resample(times: np.ndarray, poses: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Poses at times `at`: slerp between rotations, a cubic spline through the positions (a
    straight line between two); exact at the given times."""
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, Slerp

    if len(poses) == 1:
        return np.repeat(poses, len(at), axis=0)
    at = np.clip(at, times[0], times[-1])
    rotations = Slerp(times, Rotation.from_matrix(poses[:, :3, :3]))(at).as_matrix()
    positions = CubicSpline(times, poses[:, :3, 3], axis=0)(at)
    out = np.tile(np.eye(4), (len(at), 1, 1))
    out[:, :3, :3], out[:, :3, 3] = rotations, positions
    exact = np.isin(at, times)  # knots as given, not through a float round trip
    out[exact] = poses[np.searchsorted(times, at[exact])]
    return out


def write_nerfstudio(poses: np.ndarray, intrinsics: Intrinsics, fps: Fraction, path: Path) -> None:
    """A nerfstudio `camera_path.json` of OpenCV poses (for `ns-render`, and for the round trip
    in the tests): vertical fov from fy, OpenGL camera axes."""
    fov = math.degrees(2 * math.atan(intrinsics.height / (2 * intrinsics.fy)))
    cameras = [
        {
            "camera_to_world": (pose @ OPENGL_TO_OPENCV).ravel().tolist(),
            "fov": fov,
            "aspect": intrinsics.width / intrinsics.height,
        }
        for pose in poses
    ]
    data = {
        "camera_type": "perspective",
        "render_width": intrinsics.width,
        "render_height": intrinsics.height,
        "fps": float(fps),
        "seconds": len(poses) / float(fps),
        "camera_path": cameras,
    }
    path.write_text(json.dumps(data, indent=1))
