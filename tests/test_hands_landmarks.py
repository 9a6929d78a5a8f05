"""MediaPipe landmarks: placing metric landmarks in the camera, one hand per side, no hands."""

from __future__ import annotations

import numpy as np

from dwm_data.cameras import Intrinsics, project
from dwm_data.hands.landmarks import Detection, MediaPipeHands, _one_per_side, lift_to_camera

K = Intrinsics.from_fov(720, 480, 60)


def test_lift_to_camera_recovers_the_translation():
    rng = np.random.default_rng(0)
    world = rng.normal(0, 0.04, (21, 3))  # hand-centred, metres
    truth = world + [0.1, -0.05, 0.6]
    lifted = lift_to_camera(world, project(truth, K), K)
    np.testing.assert_allclose(lifted, truth, atol=1e-9)


def test_a_track_moved_to_a_recovered_camera_keeps_its_pixels_and_shape():
    """build-ego finds the hands in an assumed camera, then recovers the real one: the hands
    must project onto the same pixels in it, with the same metric shape."""
    from dwm_data.hands.backend import in_camera
    from dwm_data.hands.track import HandTrack

    rng = np.random.default_rng(1)
    recovered = Intrinsics(410.0, 410.0, 352.0, 236.0, 720, 480)
    track = HandTrack.empty(3)
    track.valid[[0, 2], 1] = True
    track.valid[2, 0] = True
    for frame, side in zip(*np.nonzero(track.valid), strict=True):
        shape = rng.normal(0, 0.04, (21, 3))
        track.keypoints_px[frame, side] = project(shape + [0.1 * side, 0.05, 0.5], recovered)
        track.keypoints_cam[frame, side] = lift_to_camera(shape, track.keypoints_px[frame, side], K)
    moved = in_camera(track, recovered)
    for frame, side in zip(*np.nonzero(track.valid), strict=True):
        placed = moved.keypoints_cam[frame, side]
        np.testing.assert_allclose(
            project(placed, recovered), track.keypoints_px[frame, side], atol=1e-3
        )
        before = track.keypoints_cam[frame, side]
        np.testing.assert_allclose(placed - placed.mean(0), before - before.mean(0), atol=1e-6)
    assert np.isnan(moved.keypoints_cam[1]).all()  # no hand: nothing placed


def _det(side: int, score: float, x: float) -> Detection:
    pixels = np.stack([np.linspace(x, x + 50, 21), np.linspace(100, 160, 21)], 1)
    return Detection(side, score, pixels, np.zeros((21, 3)))


def test_one_hand_per_side():
    # two hands both called "right": the weaker one takes the free side
    kept = _one_per_side([_det(1, 0.9, 100), _det(1, 0.6, 400)])
    assert [(d.side, d.score) for d in kept] == [(0, 0.6), (1, 0.9)]
    # the same hand reported twice: only the stronger stays
    kept = _one_per_side([_det(1, 0.9, 100), _det(0, 0.7, 105)])
    assert [(d.side, d.score) for d in kept] == [(1, 0.9)]


def test_no_hands_in_a_blank_clip():
    frames = np.full((2, 480, 720, 3), 128, np.uint8)
    assert MediaPipeHands().detect(frames) == [[], []]


def test_fingers_read_as_a_small_hand_inside_a_hand_are_dropped():
    hand = _det(1, 0.7, 100)  # a 50 x 60 px hand
    fingers = Detection(1, 0.9, hand.pixels[:8] * 0.5 + hand.pixels[0] * 0.5, np.zeros((8, 3)))
    kept = _one_per_side([fingers, hand])
    assert [(d.side, d.score) for d in kept] == [(1, 0.7)]
