"""Aria -> toolkit conventions, in one place.

- Poses compose as T_world_camera = T_world_device(t) . T_device_camera (Aria's T_a_c = T_a_b .
  T_b_c rule); Aria camera axes are already OpenCV's (x right, y down, z forward) with respect
  to the raw sensor image.
- Frames are turned upright by rotating the image 90 degrees clockwise as many times as the
  device needs (`AriaDevice.upright_turns`: once on Gen1, whose sensor is mounted sideways, never
  on Gen2); the camera frame turns with it (`UPRIGHT` per turn), which keeps the axes OpenCV
  relative to the upright image.
- Pixel centres sit at integer coordinates in Aria's calibrations, as in `dwm_data.cameras`, so
  intrinsics carry over unchanged; only gsplat needs +0.5 (`dwm_data.splat.render.gsplat_K`).
- MPS CSVs store quaternions as (qx, qy, qz, qw) (scipy's order); Sophus prints (w, x, y, z).
  Poses are read through projectaria-tools' readers, which know their own files.
"""

from __future__ import annotations

import numpy as np

# Camera-frame rotation of a 90-degree clockwise image turn: raw pixel (u, v) lands at
# (H - 1 - v, u), i.e. new x = -old y, new y = old x (what `rotate_camera_calib_cw90deg` applies).
UPRIGHT = np.array(
    [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def se3_matrix(transform) -> np.ndarray:
    """A Sophus SE3 (projectaria-tools) as a (4, 4) float64 matrix."""
    return np.asarray(transform.to_matrix(), dtype=np.float64).reshape(4, 4)


def turn(turns: int) -> np.ndarray:
    """(4, 4) raw camera -> turned camera frame change of `turns` clockwise image turns."""
    return np.linalg.matrix_power(UPRIGHT, turns)


def turn_image(image: np.ndarray, turns: int) -> np.ndarray:
    """An (H, W, ...) image turned 90 degrees clockwise `turns` times."""
    return np.ascontiguousarray(np.rot90(image, k=-turns))


def camera_to_world(world_device: np.ndarray, device_camera: np.ndarray, turns: int) -> np.ndarray:
    """OpenCV camera-to-world (..., 4, 4) of the camera image turned `turns` times."""
    return world_device @ device_camera @ turn(turns)


def upright_pixels(uv: np.ndarray, raw_height: int) -> np.ndarray:
    """Raw-sensor pixels (..., 2) -> pixels of the image turned 90 degrees clockwise once."""
    return np.stack([raw_height - 1 - uv[..., 1], uv[..., 0]], axis=-1)
