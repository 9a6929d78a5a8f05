"""Where the actor is in each frame: hands and arms, kept out of features and the splat's loss.

From the hand keypoints: the hand's hull, grown by a share of its size, and the forearm, which
keypoint detectors do not give. The forearm leaves the wrist away from the fingers, but a hand
gripping something bends at the wrist, so that direction alone misses the arm (measured on the
official clip 00039: the sleeves ran below the band in most frames). In egocentric video the arm
comes from the body, below the camera and on its own side, so the mask covers the wedge between
the two directions, from the wrist to the frame's edge.
"""

from __future__ import annotations

import numpy as np

from dwm_data.extras import require
from dwm_data.hands.track import HandTrack

# Where a forearm comes from in the image, per side (left, right): from below, on its side.
BODY_DIRECTIONS = (np.array([-0.5, 1.0]), np.array([0.5, 1.0]))
# A hand pointing further than this from its body direction (fingers down, a fist seen end-on)
# gives no usable forearm direction: the body's is used alone.
MAX_WEDGE_DEG = 100.0
ARM_WIDTH = (
    0.6  # the forearm band's width, in hand sizes (about a palm's width; grown by the margin)
)


def actor_masks(track: HandTrack, width: int, height: int, margin: float) -> np.ndarray:
    """(F, H, W) bool, True on the actor (hands and forearms) in the track's pixels."""
    cv2 = require("cv2", "ego")
    masks = np.zeros((track.frames, height, width), np.uint8)
    for index in range(track.frames):
        for side in range(2):
            if track.valid[index, side]:
                _draw_hand(cv2, masks[index], track.keypoints_px[index, side], side, margin)
    return masks.astype(bool)


def _draw_hand(cv2, mask: np.ndarray, points: np.ndarray, side: int, margin: float) -> None:
    size = float(np.linalg.norm(np.ptp(points, axis=0)))
    grow = max(3, int(round(size * margin)))
    hand = np.zeros_like(mask)
    cv2.fillConvexPoly(hand, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    cv2.fillConvexPoly(hand, _forearm_wedge(points, side, size, max(mask.shape)), 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    mask[:] = np.maximum(mask, cv2.dilate(hand, kernel))


def _forearm_wedge(points: np.ndarray, side: int, size: float, reach: int) -> np.ndarray:
    """The convex polygon (int32 pixels) swept by a band of the forearm's width from the wrist
    past the frame's edge, between the hand's own direction and its body direction."""
    cv2 = require("cv2", "ego")
    wrist, knuckles = points[0], points[[5, 9, 13, 17]].mean(0)
    body = BODY_DIRECTIONS[side] / np.linalg.norm(BODY_DIRECTIONS[side])
    pointing = wrist - knuckles
    rays = [body]
    if np.linalg.norm(pointing) > 0:
        pointing = pointing / np.linalg.norm(pointing)
        if pointing @ body >= np.cos(np.radians(MAX_WEDGE_DEG)):
            rays.append(pointing)
    half = max(1.0, size * ARM_WIDTH / 2)
    corners = []
    for ray in rays:
        across = np.array([-ray[1], ray[0]]) * half
        far = wrist + ray * 2 * reach
        corners += [wrist + across, wrist - across, far + across, far - across]
    return cv2.convexHull(np.round(np.array(corners)).astype(np.int32))


def grown(actor: np.ndarray, pixels: int) -> np.ndarray:
    """(F, H, W) actor masks grown by `pixels` each way. Structure from motion needs the scene's
    features next to the actor, while the splat and the point cloud lose nothing by masking a
    margin more (other frames see it) and keep the actor's fringe out of the static scene."""
    cv2 = require("cv2", "ego")
    if pixels <= 0:
        return actor
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in actor])
