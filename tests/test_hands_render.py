"""The hand renderers: projection to the pixel, official colours and shading, z-buffer, skeleton."""

from __future__ import annotations

import numpy as np
import pytest

from dwm_data.cameras import Intrinsics, project
from dwm_data.hands.render import AMBIENT, DIFFUSE, render_mesh, render_skeleton
from dwm_data.hands.track import HandTrack
from dwm_data.sample import HAND_COLORS, unpack_hands

trimesh = pytest.importorskip("trimesh")

K = Intrinsics.from_fov(96, 64, 60)
SPHERE = trimesh.creation.icosphere(subdivisions=3, radius=0.05)


def _lit(side: str) -> np.ndarray:
    """Colour of a surface facing the camera: ambient + full diffuse, clipped like PyTorch3D."""
    return np.clip(np.array(HAND_COLORS[side]) * (AMBIENT + DIFFUSE) * 255, 0, 255)


def _mask(image: np.ndarray, side: str) -> np.ndarray:
    r, g = image[..., 0].astype(int), image[..., 1].astype(int)
    return (r > g) if side == "right" else (g > r)


def test_mesh_lands_on_projection_with_official_colours():
    right_centre, left_centre = np.array([0.1, -0.05, 1.0]), np.array([-0.1, 0.05, 0.8])
    right = SPHERE.vertices + right_centre
    left = SPHERE.vertices * [-1, 1, 1] + left_centre  # mirrored: wound inward, must still light
    image = render_mesh(np.stack([[left, right]]), SPHERE.faces, K, 96, 64)[0]
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    for side, centre in (("right", right_centre), ("left", left_centre)):
        ys, xs = np.nonzero(_mask(image, side))
        np.testing.assert_allclose([xs.mean(), ys.mean()], project(centre, K), atol=0.3)
        middle = image[int(round(ys.mean())), int(round(xs.mean()))]
        np.testing.assert_allclose(middle, _lit(side), atol=2)
    assert (image[0, 0] == 0).all() and (image[-1, -1] == 0).all()


def test_mesh_rescales_intrinsics_and_skips_missing_hands():
    centre = np.array([0.0, 0.0, 0.5])
    frames = [[None, SPHERE.vertices + centre], [np.full((642, 3), np.nan), None]]
    video = render_mesh(frames, SPHERE.faces, K.scaled(192, 128), 96, 64)
    ys, xs = np.nonzero(video[0].sum(-1))
    np.testing.assert_allclose([xs.mean(), ys.mean()], project(centre, K), atol=0.3)
    assert video[1].max() == 0


def test_mesh_partly_outside_the_image():
    centre = np.array([0.27, 0.0, 0.5])  # about a third of the sphere beyond the right edge
    image = render_mesh([[None, SPHERE.vertices + centre]], SPHERE.faces, K, 96, 64)[0]
    ys, xs = np.nonzero(image.sum(-1))
    assert xs.max() == 95 and 0 < len(xs) < 96 * 64
    radius_px = K.fx * 0.05 / 0.5
    assert xs.min() == pytest.approx(project(centre, K)[0] - radius_px, abs=1.5)


def test_mesh_z_buffer_nearer_hand_wins():
    near = SPHERE.vertices + [0.0, 0.0, 0.6]
    far = SPHERE.vertices * 2 + [0.0, 0.0, 1.0]
    for pair in ([near, far], [far, near]):
        image = render_mesh([pair], SPHERE.faces, K, 96, 64)[0]
        side = "left" if pair[0] is near else "right"
        assert _mask(image, side)[32, 48], "the nearer hand must cover the image centre"


def _track(points_px: np.ndarray, depth: float = 0.5) -> HandTrack:
    track = HandTrack.empty(1)
    track.valid[0, 1] = True
    track.keypoints_px[0, 1] = points_px
    track.keypoints_cam[0, 1] = np.c_[points_px, np.full(21, depth)]
    return track


def test_skeleton_draws_bones_at_keypoints():
    points = np.stack([np.linspace(20, 70, 21), np.linspace(10, 50, 21)], axis=1)
    image = render_skeleton(_track(points), K, 96, 64)[0]
    color = np.array(HAND_COLORS["right"]) * 255
    for x, y in points.round().astype(int):
        np.testing.assert_allclose(image[y, x], color, atol=3)
    assert image[60, 5].max() == 0
    doubled = render_skeleton(_track(points), K, 192, 128)[0]
    x, y = np.round((points[7] + 0.5) * 2 - 0.5).astype(int)
    assert doubled[y, x].max() > 0


def test_track_npz_round_trip():
    track = HandTrack.empty(3)
    track.valid[1] = True
    track.keypoints_cam[1] = np.random.default_rng(0).normal(size=(2, 21, 3))
    track.keypoints_px[1] = 10.0
    track.mano = {"betas": np.zeros((3, 2, 10), np.float32)}
    data = track.to_npz()
    assert unpack_hands(data)["valid"].shape == (3, 2)
    again = HandTrack.from_npz(data)
    np.testing.assert_array_equal(again.valid, track.valid)
    np.testing.assert_allclose(again.keypoints_cam[1], track.keypoints_cam[1], rtol=1e-6)
    assert again.mano["betas"].shape == (3, 2, 10)
    with pytest.raises(ValueError, match="keypoints_px"):
        HandTrack(track.valid, track.keypoints_cam, track.keypoints_px[:, :, :20])


def test_mesh_rendering_survives_another_renderer_tearing_down_egl():
    """pyrender's delete() (also run on garbage collection) terminates the shared EGL display."""
    import pyrender

    verts = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]], np.float32)
    faces = (np.array([[0, 1, 2]]), np.zeros((0, 3), np.int64))
    k = Intrinsics.from_fov(96, 64, 90)
    before = render_mesh([[verts, verts]], faces, k, 96, 64)
    other = pyrender.OffscreenRenderer(32, 32)
    other.delete()
    after = render_mesh([[verts, verts]], faces, k, 96, 64)
    assert (before.max(-1) > 0).sum() > 20
    np.testing.assert_array_equal(before, after)
