"""Temporal clean-up: one-frame jumps go, short gaps are bridged, long gaps stay empty."""

from __future__ import annotations

import numpy as np

from dwm_data.hands.cleanup import clean_track
from dwm_data.hands.track import HandTrack

HAND = np.stack([np.linspace(0, 40, 21), np.linspace(0, 30, 21)], axis=1)  # a 50 px hand


def _moving_hand(frames: int, valid: list[int]) -> HandTrack:
    track = HandTrack.empty(frames)
    for t in valid:
        track.valid[t, 1] = True
        track.keypoints_px[t, 1] = HAND + [2.0 * t, 0.0]
        track.keypoints_cam[t, 1] = np.c_[track.keypoints_px[t, 1] / 100, np.full(21, 0.5)]
        track.scores[t, 1] = 0.9
    return track


def test_one_frame_jump_is_dropped_and_bridged():
    track = _moving_hand(7, list(range(7)))
    track.keypoints_px[3, 1] += [60.0, 0.0]  # a wrong detection for one frame
    cleaned, report = clean_track(track, max_gap=2)
    assert report.dropped == 1 and report.bridged == 1
    assert cleaned.valid[:, 1].all()
    np.testing.assert_allclose(cleaned.keypoints_px[3, 1], HAND + [6.0, 0.0], atol=1e-5)
    assert track.keypoints_px[3, 1, 0, 0] == 66.0, "the input track is left untouched"


def test_steady_motion_is_kept():
    cleaned, report = clean_track(_moving_hand(9, list(range(9))))
    assert report.as_dict() == {"relabelled": 0, "dropped": 0, "bridged": 0, "followed": 0}


def test_short_gaps_are_bridged_long_gaps_are_not():
    track = _moving_hand(16, [0, 1, 4, 5, 12, 13])  # a 2-frame gap and a 6-frame gap
    cleaned, report = clean_track(track, max_gap=2)
    assert report.bridged == 2
    assert cleaned.valid[2:4, 1].all()
    assert not cleaned.valid[6:12, 1].any()
    assert np.isnan(cleaned.keypoints_px[6:12, 1]).all()
    np.testing.assert_allclose(cleaned.keypoints_px[2, 1], HAND + [4.0, 0.0], atol=1e-5)
    assert not cleaned.valid[:, 0].any(), "no hand is invented on the empty side"


def test_lone_hand_keeps_one_side_through_label_flicker():
    track = _moving_hand(9, list(range(9)))
    for t in (0, 1, 8):  # entering and leaving the frame, MediaPipe says "left"
        for array in (track.valid, track.keypoints_px, track.keypoints_cam, track.scores):
            array[t, [0, 1]] = array[t, [1, 0]]
    cleaned, report = clean_track(track)
    assert report.relabelled == 3
    assert cleaned.valid[:, 1].all() and not cleaned.valid[:, 0].any()
    np.testing.assert_allclose(cleaned.keypoints_px[8, 1], HAND + [16.0, 0.0])


def test_two_hands_far_apart_keep_their_sides():
    track = _moving_hand(6, [0, 1, 2])
    track.valid[3:, 0] = True
    track.keypoints_px[3:, 0] = HAND + [300.0, 200.0]
    cleaned, report = clean_track(track)
    assert report.relabelled == 0
    np.testing.assert_array_equal(cleaned.valid, track.valid)
