"""`--clean-static`: the static video without the actor's hands, by inpainting frame 0.

The official static video is frame 0 repeated, and a hand already in view at frame 0 stays in
the "static scene". The hand region comes from the estimated keypoints (their convex hull and
bones, widened by a fraction of the hand size, so skin at the silhouette goes too), and OpenCV's
Telea inpainting fills it from the surrounding scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwm_data.extras import require
from dwm_data.hands.track import BONES, HandTrack


@dataclass(frozen=True)
class CleanResult:
    frame: np.ndarray
    hands: int  # hands removed
    fraction: float  # share of the frame inpainted

    def as_dict(self) -> dict:
        return {"hands_removed": self.hands, "inpainted_fraction": round(self.fraction, 4)}


def hand_mask(
    track: HandTrack, index: int, width: int, height: int, grow: float = 0.15
) -> np.ndarray:
    """(H,W) bool: where the hands of frame `index` are, in the track's pixel coordinates."""
    cv2 = require("cv2", "hands")
    mask = np.zeros((height, width), np.uint8)
    for side in range(2):
        if not track.valid[index, side]:
            continue
        points = track.keypoints_px[index, side]
        size = float(np.linalg.norm(np.ptp(points, axis=0)))
        width_px = max(2, int(round(size * grow)))
        pixels = np.round(points).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(pixels), 1)
        for a, b in BONES:
            cv2.line(mask, tuple(pixels[a]), tuple(pixels[b]), 1, width_px)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width_px, width_px))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


def clean_static_frame(
    frame: np.ndarray, track: HandTrack, index: int = 0, silhouette: np.ndarray | None = None
) -> CleanResult:
    """Frame `index` with its hands inpainted away (unchanged when it shows no hand).
    `silhouette` (H,W bool), the rendered hand meshes when there are any, widens the mask to
    the whole hand where keypoints alone miss the palm's edge."""
    cv2 = require("cv2", "hands")
    height, width = frame.shape[:2]
    mask = hand_mask(track, index, width, height)
    if silhouette is not None and silhouette.any():
        grow = max(3, int(round(min(width, height) / 60)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
        mask |= cv2.dilate(silhouette.astype(np.uint8), kernel).astype(bool)
    if not mask.any():
        return CleanResult(frame, 0, 0.0)
    radius = max(3, int(round(min(width, height) / 100)))
    filled = cv2.inpaint(
        np.ascontiguousarray(frame), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA
    )
    return CleanResult(filled, int(track.valid[index].sum()), float(mask.mean()))
