"""Hands the detector lost, followed through the frames by optical flow from where it saw them.

On egocentric video MediaPipe finds a hand while it is open and lit and loses it once it grips
something, turns away or sinks into shadow, while the hand stays in view: on the real Aria clip
00039 both hands hold a pot from frame 16 to the end and MediaPipe sees neither (it scores them
as hands in 8 of 88 crops, brightened or not). The image still shows where they go. From each
hand the clean-up kept, its points (the landmarks and corners inside their hull) are tracked
into the next frame with pyramidal Lucas-Kanade, checked forwards and backwards, and the hand's
landmarks follow the similarity transform the surviving points agree on. Following stops where
the flow is no longer trustworthy (too few points survive the check), where the hand leaves the
image, or where it would land on the other hand, so a hand is only drawn where the image carries
it. Measured against the official hand videos (`dwm-data bench hands-real`, docs/benchmarks.md):
recall on 00039 0.27 -> 1.00 and on 00013 0.64 -> 0.92, precision on the official hand frames
1.00, sides unchanged.

The shape is the last detected one: a gripping hand changes little, and the mesh backends refine
it (HaMeR reads the box, the MANO fit the keypoints).
"""

from __future__ import annotations

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.hands.landmarks import box_iou, lift_to_camera
from dwm_data.hands.track import HandTrack

FLOW = {
    "winSize": (21, 21),
    "maxLevel": 3,
    "criteria": (3, 30, 0.01),  # cv2.TERM_CRITERIA_EPS | COUNT: 30 steps or 0.01 px
}
MAX_CORNERS = 60  # corners inside the hand's hull, tracked with its 21 landmarks
ROUND_TRIP_PX = 1.5  # a point is kept when tracking it back lands this close to where it began
MIN_KEPT = 0.5  # share of points that must survive the round trip
MIN_POINTS = 6
RANSAC_PX = 2.0
MAX_OVERLAP = 0.2  # box IoU with the other hand above which a followed hand is that hand
IN_VIEW = 0.5  # share of landmarks (within a 20 px margin) that must stay inside the image
SCORE = 0.0  # followed hands carry no detector confidence


def follow_lost_hands(frames: np.ndarray, track: HandTrack, intrinsics: Intrinsics) -> int:
    """Fill, in place, the frames where a hand of `track` is missing but the flow from a
    neighbouring frame carries it; returns the hand-frames added. Forwards from every hand,
    then backwards (so a hand first seen late is followed back to where it entered). A
    landmark track only: MANO parameters and vertices come after, from the backends."""
    import cv2

    if track.mano or track.vertices is not None:
        raise ValueError("follow_lost_hands takes a landmark track, before any MANO refinement")

    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    added = 0
    for side in range(2):
        for order in (range(track.frames), range(track.frames - 1, -1, -1)):
            previous = None
            for t in order:
                if not track.valid[t, side] and previous is not None:
                    moved = _moved(gray[previous], gray[t], track.keypoints_px[previous, side])
                    if moved is not None and _placeable(track, t, side, moved, gray[t].shape):
                        _put(track, t, side, moved, intrinsics, previous)
                        added += 1
                previous = t if track.valid[t, side] else None
    return added


def _moved(before: np.ndarray, after: np.ndarray, pixels: np.ndarray) -> np.ndarray | None:
    """The landmarks carried from `before` to `after`, or None when the flow is not sure."""
    import cv2

    points = _points(before, pixels)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(before, after, points, None, **FLOW)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(after, before, ahead, None, **FLOW)
    round_trip = np.linalg.norm((back - points)[:, 0], axis=1)
    kept = (found[:, 0] == 1) & (found_back[:, 0] == 1) & (round_trip < ROUND_TRIP_PX)
    if kept.mean() < MIN_KEPT or kept.sum() < MIN_POINTS:
        return None
    transform, _ = cv2.estimateAffinePartial2D(
        points[kept], ahead[kept], ransacReprojThreshold=RANSAC_PX
    )
    if transform is None:
        return None
    return (pixels @ transform[:, :2].T + transform[:, 2]).astype(np.float32)


def _points(gray: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The landmarks and the corners inside their hull, (N,1,2) float32 as OpenCV's flow wants."""
    import cv2

    mask = np.zeros_like(gray)
    hull = cv2.convexHull(pixels.astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(mask, hull, 255)
    corners = cv2.goodFeaturesToTrack(gray, MAX_CORNERS, 0.01, 3, mask=mask)
    corners = np.zeros((0, 1, 2), np.float32) if corners is None else corners
    return np.concatenate([corners, pixels.reshape(-1, 1, 2).astype(np.float32)])


def _placeable(track: HandTrack, t: int, side: int, pixels: np.ndarray, shape) -> bool:
    """In view, and not on the other hand of the same frame."""
    height, width = shape
    inside = (pixels > -20).all(axis=1) & (pixels[:, 0] < width + 20) & (pixels[:, 1] < height + 20)
    if inside.mean() <= IN_VIEW:
        return False
    if not track.valid[t, 1 - side]:
        return True
    other = track.keypoints_px[t, 1 - side]
    return box_iou(_box(pixels), _box(other)) <= MAX_OVERLAP


def _box(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)])


def _put(
    track: HandTrack, t: int, side: int, pixels: np.ndarray, intrinsics: Intrinsics, source: int
) -> None:
    """The followed hand in frame t: the source frame's metric shape placed on the new pixels."""
    shape = track.keypoints_cam[source, side]
    track.valid[t, side] = True
    track.keypoints_px[t, side] = pixels
    track.keypoints_cam[t, side] = lift_to_camera(shape - shape.mean(axis=0), pixels, intrinsics)
    if track.scores is not None:
        track.scores[t, side] = SCORE
