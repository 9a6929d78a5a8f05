"""The Aria -> OpenCV conversions (one place: dwm_data.aria.conventions) and the landmark order."""

from __future__ import annotations

import numpy as np
import pytest

from dwm_data.aria.conventions import (
    UPRIGHT,
    camera_to_world,
    upright_pixels,
)
from dwm_data.aria.hands import ARIA_TO_OPENPOSE, aria_to_openpose
from dwm_data.cameras import Intrinsics, project, world_to_camera


def test_upright_turn_round_trips_pixels_and_points():
    """Projecting in the raw camera then turning the image equals projecting in the turned camera."""
    raw = Intrinsics(50.0, 50.0, 40.0, 30.0, 80, 64)  # raw sensor: 80 wide, 64 tall
    upright = Intrinsics(50.0, 50.0, raw.height - 1 - raw.cy, raw.cx, raw.height, raw.width)
    points = np.random.default_rng(0).uniform([-0.5, -0.5, 1.0], [0.5, 0.5, 3.0], (50, 3))
    via_raw = upright_pixels(project(points, raw), raw.height)
    via_upright = project(points @ UPRIGHT[:3, :3], upright)  # raw-frame point -> upright frame
    assert np.allclose(via_raw, via_upright)
    assert np.allclose(UPRIGHT @ np.linalg.inv(UPRIGHT), np.eye(4))
    assert np.linalg.det(UPRIGHT[:3, :3]) == pytest.approx(1.0)


def test_camera_to_world_composes_device_and_camera():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    world_device, device_camera = np.eye(4), np.eye(4)
    world_device[:3, :3] = rotation.from_euler("z", 30, degrees=True).as_matrix()
    world_device[:3, 3] = [1.0, 2.0, 0.5]
    device_camera[:3, 3] = [0.05, 0.0, 0.0]
    pose = camera_to_world(world_device, device_camera, turns=0)
    point_camera = np.array([0.1, 0.2, 1.0])
    point_world = world_device[:3, :3] @ (point_camera + device_camera[:3, 3]) + world_device[:3, 3]
    assert np.allclose(world_to_camera(point_world, pose), point_camera)
    turned = camera_to_world(world_device, device_camera, turns=1)
    assert np.allclose(turned[:3, 3], pose[:3, 3])  # turning the image does not move the camera
    assert np.allclose(turned[:3, 2], pose[:3, 2])  # nor change where it looks


def test_aria_landmarks_to_openpose_order():
    assert sorted(i for i in ARIA_TO_OPENPOSE if i >= 0) == [i for i in range(20)]  # palm dropped
    aria = np.arange(21 * 3, dtype=float).reshape(21, 3)
    openpose = aria_to_openpose(aria)
    assert np.array_equal(openpose[0], aria[5])  # wrist
    assert np.array_equal(openpose[[4, 8, 12, 16, 20]], aria[[0, 1, 2, 3, 4]])  # fingertips
    assert np.array_equal(openpose[[5, 6, 7]], aria[[8, 9, 10]])  # index base to distal
    assert np.allclose(openpose[1], 0.5 * (aria[5] + aria[6]))  # thumb CMC: interpolated
