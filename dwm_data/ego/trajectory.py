"""How far recovered cameras are from true ones, up to the similarity SfM cannot know.

Structure from motion fixes the world only up to rotation, translation and scale, so a recovered
path is first brought onto the true one by the least-squares similarity of the camera centres
(Umeyama 1991); then the centres' error is measured against the path length, and each camera's
rotation relative to the first camera against the true relative rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PathError:
    rmse_m: float  # camera centres after alignment, in the true path's units
    path_length_m: float
    max_rotation_deg: float
    mean_rotation_deg: float
    scale: float  # true units per recovered unit

    @property
    def relative(self) -> float:
        return self.rmse_m / max(self.path_length_m, 1e-12)

    def as_dict(self) -> dict:
        return {
            "trajectory_rmse": round(self.rmse_m, 6),
            "path_length": round(self.path_length_m, 6),
            "relative_error": round(self.relative, 6),
            "max_rotation_deg": round(self.max_rotation_deg, 4),
            "mean_rotation_deg": round(self.mean_rotation_deg, 4),
        }


def similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R, translation t minimising |target - (s R source + t)|^2 (N, 3)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(b.T @ a / len(source))
    flip = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[2, 2] = -1
    rotation = u @ flip @ vt
    scale = float(np.trace(np.diag(d) @ flip) / max((a**2).sum() / len(source), 1e-24))
    return scale, rotation, mu_t - scale * rotation @ mu_s


def path_error(recovered: np.ndarray, truth: np.ndarray) -> PathError:
    """Error of recovered OpenCV camera-to-world poses (F, 4, 4) against the true ones."""
    scale, rotation, shift = similarity(recovered[:, :3, 3], truth[:, :3, 3])
    centres = scale * recovered[:, :3, 3] @ rotation.T + shift
    rmse = float(np.sqrt(((centres - truth[:, :3, 3]) ** 2).sum(1).mean()))
    length = float(np.linalg.norm(np.diff(truth[:, :3, 3], axis=0), axis=1).sum())
    # rotations relative to the first camera need no alignment: a near-straight path leaves
    # the centres' alignment free to roll about the path, the cameras' orientations do not
    recovered_rel = np.einsum("ij,fik->fjk", recovered[0, :3, :3], recovered[:, :3, :3])
    truth_rel = np.einsum("ij,fik->fjk", truth[0, :3, :3], truth[:, :3, :3])
    difference = np.einsum("fij,fik->fjk", recovered_rel, truth_rel)
    cos = np.clip((np.trace(difference, axis1=1, axis2=2) - 1) / 2, -1, 1)
    angles = np.degrees(np.arccos(cos))
    return PathError(rmse, length, float(angles.max()), float(angles.mean()), scale)
