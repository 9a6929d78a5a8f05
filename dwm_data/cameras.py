"""Pinhole cameras in the toolkit's one convention: OpenCV axes (x right, y down, z forward), metres.

Sources convert at their edge with the functions here (Blender's camera looks down -Z with +Y up;
the fix is one axis flip), so no other module needs to know another convention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Blender camera axes (x right, y up, z backward) -> OpenCV camera axes (x right, y down, z forward)
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Intrinsics:
    """Pixel-centre convention: the centre of the top-left pixel is (0, 0), so cx = W/2 - 0.5
    for a centred principal point. `from_fov` follows it; Blender and the official scripts put
    cx at W/2 (half a pixel off), which `from_fov(..., pixel_centers=False)` reproduces."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(
        cls, width: int, height: int, hfov_deg: float, pixel_centers: bool = True
    ) -> Intrinsics:
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        offset = 0.5 if pixel_centers else 0.0
        return cls(f, f, width / 2 - offset, height / 2 - offset, width, height)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution (pixel-centre aware)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def project(points_cam: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels; points behind the camera give NaN."""
    z = points_cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * points_cam[..., 0] / z + intrinsics.cx
        v = intrinsics.fy * points_cam[..., 1] / z + intrinsics.cy
    uv = np.stack([u, v], axis=-1)
    uv[z <= 0] = np.nan
    return uv


def world_to_camera(points_world: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """(..., 3) world points into the frame of a (4, 4) OpenCV camera-to-world pose."""
    rotation, translation = cam_to_world[:3, :3], cam_to_world[:3, 3]
    return (points_world - translation) @ rotation


def blender_to_opencv(cam_to_world: np.ndarray) -> np.ndarray:
    """Blender camera `matrix_world` (..., 4, 4) -> OpenCV camera-to-world, same world."""
    return cam_to_world @ BLENDER_TO_OPENCV


def opencv_to_blender(cam_to_world: np.ndarray) -> np.ndarray:
    return cam_to_world @ BLENDER_TO_OPENCV  # the flip is its own inverse
