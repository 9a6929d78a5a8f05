"""Following lost hands by optical flow (`hands.follow`), on frames whose motion is known: a
textured hand-sized patch slides over a textured background by a set step per frame."""

from __future__ import annotations

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.hands.follow import follow_lost_hands
from dwm_data.hands.track import HandTrack

WIDTH, HEIGHT, STEP = 320, 240, np.array([3.0, 2.0])


def sliding_patch(frames: int, stop_after: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a 60 px textured patch moving by STEP each frame over a blurred-noise
    background, and the patch's top-left corner per frame. From `stop_after` on, the patch and
    its background are gone (a flat grey frame: nothing for the flow to hold on to)."""
    import cv2

    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8), (0, 0), 3)
    patch = cv2.GaussianBlur(rng.integers(0, 255, (60, 60, 3), np.uint8), (0, 0), 1.5)
    corners = np.array([60.0, 50.0]) + STEP * np.arange(frames)[:, None]
    video = np.repeat(background[None], frames, axis=0)
    for t, (x, y) in enumerate(corners.astype(int)):
        video[t, y : y + 60, x : x + 60] = patch
        if stop_after is not None and t >= stop_after:
            video[t] = 128
    return video, corners


def hand_in_first_frame(frames: int, corner: np.ndarray) -> HandTrack:
    track = HandTrack.empty(frames)
    pixels = corner + np.random.default_rng(1).uniform(8, 52, (21, 2))
    track.valid[0, 1] = True
    track.keypoints_px[0, 1] = pixels
    track.keypoints_cam[0, 1] = np.c_[
        (pixels - [WIDTH / 2, HEIGHT / 2]) / 300 * 0.4, np.full(21, 0.4)
    ]
    track.scores[0, 1] = 0.9
    return track


def test_a_lost_hand_follows_the_image_motion():
    video, corners = sliding_patch(10)
    track = hand_in_first_frame(10, corners[0])
    k = Intrinsics.from_fov(WIDTH, HEIGHT, 60)
    assert follow_lost_hands(video, track, k) == 9
    assert track.valid[:, 1].all() and not track.valid[:, 0].any()
    moved = track.keypoints_px[:, 1] - track.keypoints_px[0, 1]
    expected = (corners - corners[0])[:, None]
    np.testing.assert_allclose(moved, np.broadcast_to(expected, moved.shape), atol=0.5)
    assert (track.scores[1:, 1] == 0).all()  # no detector vouched for these
    # placed in the camera: the followed metric hand projects onto the followed pixels
    cam = track.keypoints_cam[5, 1]
    projected = np.c_[k.fx * cam[:, 0] / cam[:, 2] + k.cx, k.fy * cam[:, 1] / cam[:, 2] + k.cy]
    np.testing.assert_allclose(projected, track.keypoints_px[5, 1], atol=1.0)


def test_following_stops_where_the_image_no_longer_carries_the_hand():
    video, corners = sliding_patch(10, stop_after=4)
    track = hand_in_first_frame(10, corners[0])
    follow_lost_hands(video, track, Intrinsics.from_fov(WIDTH, HEIGHT, 60))
    assert track.valid[:4, 1].all() and not track.valid[4:, 1].any()


def test_a_hand_is_not_followed_onto_the_other_hand():
    video, corners = sliding_patch(6)
    track = hand_in_first_frame(6, corners[0])
    track.valid[1:, 0] = True  # the other side's hand sits where this one goes
    track.keypoints_px[1:, 0] = track.keypoints_px[0, 1] + STEP
    track.keypoints_cam[1:, 0] = track.keypoints_cam[0, 1]
    assert follow_lost_hands(video, track, Intrinsics.from_fov(WIDTH, HEIGHT, 60)) == 0


def test_known_hands_are_not_followed():
    from dwm_data.hands.backend import MediaPipeBackend, estimate_hands

    video, corners = sliding_patch(6)
    known = hand_in_first_frame(6, corners[0])
    estimate = estimate_hands(
        MediaPipeBackend(), video, Intrinsics.from_fov(WIDTH, HEIGHT, 60), landmarks=known
    )
    assert estimate.cleanup.followed == 0 and estimate.track.valid[:, 1].sum() == 1
