"""MediaPipe legacy Hands (the models bundled in mediapipe 0.10.21): boxes, sides, 21 landmarks.

Legacy MediaPipe was trained on selfie (mirrored) images: on ordinary video it labels a person's
right hand "Left" (DWM's fork maps "Left" to right=1) and, measured on a real fixed-camera clip,
it also finds the hand in fewer frames. So frames are mirrored before detection; the labels are
then the true sides and only the x coordinates are mirrored back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.extras import require

SIDE_INDEX = {"Left": 0, "Right": 1}


@dataclass(frozen=True)
class Detection:
    """One hand in one frame: side (0 left, 1 right), confidence, landmarks in pixels (21,2)
    and MediaPipe's metric world landmarks (21,3, metres, hand-centred, camera-aligned axes)."""

    side: int
    score: float
    pixels: np.ndarray
    world: np.ndarray

    @property
    def box(self) -> np.ndarray:
        """(x0, y0, x1, y1): the landmark extent, as DWM's fork boxes hands for HaMeR."""
        return np.concatenate([self.pixels.min(axis=0), self.pixels.max(axis=0)])


class MediaPipeHands:
    """Detects and tracks up to two hands through one clip at a time."""

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.3,
        model_complexity: int = 1,
    ):
        self.mp = require("mediapipe", "hands")
        self.settings = {
            "max_num_hands": 2,
            "model_complexity": model_complexity,
            "min_detection_confidence": min_detection_confidence,
            "min_tracking_confidence": min_tracking_confidence,
        }

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Per frame, the hands found (at most one per side). Tracking state starts fresh for
        every clip, so a hand from the previous clip is never carried over."""
        height, width = frames.shape[1:3]
        out = []
        with self.mp.solutions.hands.Hands(static_image_mode=False, **self.settings) as hands:
            for frame in frames:
                result = hands.process(np.ascontiguousarray(frame[:, ::-1]))
                out.append(_detections(result, width, height))
        return out


def _detections(result, width: int, height: int) -> list[Detection]:
    if not result.multi_hand_landmarks:
        return []
    found = []
    for landmarks, world, handedness in zip(
        result.multi_hand_landmarks,
        result.multi_hand_world_landmarks,
        result.multi_handedness,
        strict=True,
    ):
        label = handedness.classification[0]
        normalised = np.array([(p.x, p.y) for p in landmarks.landmark])
        # Back from the mirrored frame; pixel centres at integers (cx = W/2 - 0.5 convention).
        pixels = np.stack([(1.0 - normalised[:, 0]) * width, normalised[:, 1] * height], 1) - 0.5
        metric = np.array([(-p.x, p.y, p.z) for p in world.landmark])
        found.append(Detection(SIDE_INDEX[label.label], float(label.score), pixels, metric))
    return _one_per_side(found)


def _one_per_side(found: list[Detection]) -> list[Detection]:
    """The best hand per side; a second hand labelled the same side takes the free side unless
    it overlaps the first (then it is the same hand seen twice)."""
    kept: dict[int, Detection] = {}
    for det in sorted(found, key=lambda d: -d.score):
        if any(_iou(det.box, other.box) > 0.3 for other in kept.values()):
            continue
        side = det.side if det.side not in kept else 1 - det.side
        if side not in kept:
            kept[side] = Detection(side, det.score, det.pixels, det.world)
    return [kept[s] for s in sorted(kept)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def lift_to_camera(world: np.ndarray, pixels: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Place MediaPipe's hand-centred metric landmarks in the camera frame (21,3).

    The world landmarks carry the hand's shape and size but not its position; the translation
    t that makes them project onto the detected pixels solves a linear least-squares problem:
    fx (X + tx) = (u - cx)(Z + tz), likewise for y.
    """
    u = (pixels[:, 0] - intrinsics.cx) / intrinsics.fx
    v = (pixels[:, 1] - intrinsics.cy) / intrinsics.fy
    ones, zeros = np.ones_like(u), np.zeros_like(u)
    a = np.concatenate([np.stack([ones, zeros, -u], 1), np.stack([zeros, ones, -v], 1)])
    b = np.concatenate([u * world[:, 2] - world[:, 0], v * world[:, 2] - world[:, 1]])
    translation = np.linalg.lstsq(a, b, rcond=None)[0]
    return world + translation
