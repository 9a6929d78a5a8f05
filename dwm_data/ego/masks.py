"""Where the actor is in each frame: hands and arms, kept out of features and the splat's loss.

From the hand keypoints: the hand's hull, grown by a share of its size, and the forearm as a
band from the wrist away from the fingers to the frame's edge (in egocentric video the arms
enter from below and the sides, and keypoint detectors do not give them).
"""

from __future__ import annotations

import numpy as np

from dwm_data.extras import require
from dwm_data.hands.track import HandTrack


def actor_masks(track: HandTrack, width: int, height: int, margin: float) -> np.ndarray:
    """(F, H, W) bool, True on the actor (hands and forearms) in the track's pixels."""
    cv2 = require("cv2", "ego")
    masks = np.zeros((track.frames, height, width), np.uint8)
    for index in range(track.frames):
        for side in range(2):
            if track.valid[index, side]:
                _draw_hand(cv2, masks[index], track.keypoints_px[index, side], margin)
    return masks.astype(bool)


def _draw_hand(cv2, mask: np.ndarray, points: np.ndarray, margin: float) -> None:
    size = float(np.linalg.norm(np.ptp(points, axis=0)))
    grow = max(3, int(round(size * margin)))
    pixels = np.round(points).astype(np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(pixels), 1)
    wrist, knuckles = points[0], points[[5, 9, 13, 17]].mean(0)
    direction = wrist - knuckles
    length = np.linalg.norm(direction)
    if length > 0:  # the forearm: from the wrist, away from the fingers, past the frame's edge
        reach = wrist + direction / length * 2 * max(mask.shape)
        cv2.line(
            mask,
            tuple(int(v) for v in np.round(wrist)),
            tuple(int(v) for v in np.round(reach)),
            1,
            max(2, int(round(size * 0.6))),
        )
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    mask[:] = np.maximum(mask, cv2.dilate(mask, kernel))
