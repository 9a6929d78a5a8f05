"""A capture folder: the recording and the MPS outputs that belong to it, found by file name.

MPS writes `slam/` (formerly `trajectory/`) and `hand_tracking/` folders, sometimes nested under
`mps/` or `mps_<name>_vrs/`; we search the capture folder for the file names MPS uses rather
than insisting on one layout. Ground-truth trajectories of Aria Digital Twin share the
closed-loop CSV format and are accepted in its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.aria.recording import FOLDER_TIMES, Recording, RgbFolderRecording, VrsRecording
from dwm_data.errors import UnitError
from dwm_data.extras import require

TRAJECTORY_NAMES = ("closed_loop_trajectory.csv", "aria_trajectory.csv")
ONLINE_CALIBRATION_NAMES = ("online_calibration.jsonl",)
POINT_NAMES = ("semidense_points.csv.gz", "global_points.csv.gz")
HAND_NAMES = (
    "hand_tracking_results.csv",
    "hand_tracking_results_v2.csv",
    "hand_tracking_results_v1.csv",
)


@dataclass(frozen=True)
class CaptureFiles:
    root: Path
    recording: Path  # a .vrs file or a folder recording
    trajectory: Path | None
    online_calibration: Path | None
    points: Path | None
    hand_tracking: Path | None

    @property
    def name(self) -> str:
        return self.root.name

    def open_recording(self) -> Recording:
        if self.recording.is_dir():
            return RgbFolderRecording(self.recording)
        return VrsRecording(self.recording)


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        found = sorted(root.rglob(name))
        if found:
            return found[0]
    return None


def is_capture(folder: Path) -> bool:
    return any(folder.glob("*.vrs")) or (folder / FOLDER_TIMES).exists()


def find_capture(root: Path) -> CaptureFiles:
    """The files of one capture; the recording is the one `.vrs` (or frame folder) at its top."""
    if not root.is_dir():
        raise UnitError("capture", f"{root} is not a folder")
    vrs = sorted(p for p in root.glob("*.vrs") if "depth" not in p.name)
    if (root / FOLDER_TIMES).exists():
        recording = root
    elif len(vrs) == 1:
        recording = vrs[0]
    else:
        found = ", ".join(p.name for p in vrs) or "none"
        raise UnitError("capture", f"{root.name}: expected one .vrs recording, found {found}")
    return CaptureFiles(
        root=root,
        recording=recording,
        trajectory=_first(root, TRAJECTORY_NAMES),
        online_calibration=_first(root, ONLINE_CALIBRATION_NAMES),
        points=_first(root, POINT_NAMES),
        hand_tracking=_first(root, HAND_NAMES),
    )


def read_points(path: Path, max_inv_dist_std: float, max_dist_std: float) -> np.ndarray:
    """(P, 3) semidense points whose depth is well constrained (MPS's confidence filter)."""
    mps = require("projectaria_tools.core.mps", "aria")
    from projectaria_tools.core.mps.utils import filter_points_from_confidence

    points = mps.read_global_point_cloud(str(path))
    kept = filter_points_from_confidence(points, max_inv_dist_std, max_dist_std)
    if not kept:
        raise UnitError("points", f"{path.name}: no semidense point passes the confidence filter")
    return np.array([p.position_world for p in kept], dtype=np.float64)


def read_online_calibrations(path: Path) -> list:
    mps = require("projectaria_tools.core.mps", "aria")
    return list(mps.read_online_calibration(str(path)))
