"""MediaPipe legacy Hands (the models bundled in mediapipe 0.10.21): boxes, sides, 21 landmarks.

Legacy MediaPipe was trained on selfie (mirrored) images: on ordinary video it labels a person's
right hand "Left" (DWM's fork maps "Left" to right=1) and, measured on a real fixed-camera clip,
it also finds the hand in fewer frames. So frames are mirrored before detection, and only the x
coordinates are mirrored back.

Its label still guesses from the hand's look, and a hand seen from behind, gripping, is the
mirror image of one seen from the palm: on the real egocentric clips it was right for 22% to 92%
of the hands. In first-person video (every source here: TASTE-Rob's head-height camera, Aria,
egocentric clips) the arms come in from below, the left on the left: a left hand points up and
to the right and sits left of the centre. The side is so read from the wrist's place and the
wrist -> middle-finger direction (`arm_side`): measured on the detections of the three real
egocentric clips it was right for 79%, 100% and 100% (the label: 63%, 92%, 22%) and it agreed
on every hand of the fixed-camera clip; the temporal clean-up then gives a continuous hand one
side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.extras import require

# A hand whose landmarks span less than this (pixels, the box's shorter side) is a track that
# collapsed onto a few pixels after the hand left (seen at low tracking thresholds), not a hand.
MIN_HAND_PX = 12.0
MIN_SIZE_RATIO = 0.5  # of the largest hand's box diagonal in the same frame
# Weight of the wrist's place (-1 at the right border .. 1 at the left) against the pointing
# direction (x of the unit wrist -> middle-finger vector) in `arm_side`.
PLACE_WEIGHT = 2.0


@dataclass(frozen=True)
class Detection:
    """One hand in one frame: side (0 left, 1 right), confidence, landmarks in pixels (21,2)
    and MediaPipe's metric world landmarks (21,3, metres, hand-centred, camera-aligned axes);
    None from a detector without metric 3D (ViTPose), whose hands serve for their boxes."""

    side: int
    score: float
    pixels: np.ndarray
    world: np.ndarray | None = None

    @property
    def box(self) -> np.ndarray:
        """(x0, y0, x1, y1): the landmark extent, as DWM's fork boxes hands for HaMeR."""
        return np.concatenate([self.pixels.min(axis=0), self.pixels.max(axis=0)])


class MediaPipeHands:
    """Detects and tracks up to two hands through one clip at a time.

    On egocentric video (hands small, seen from behind, entering from the border, dim rooms)
    MediaPipe's palm detector rarely fires at its default 0.5, while its landmark model, once
    given a box, keeps following the hand: so detection runs at a low threshold, tracking goes
    on while the landmark model sees any hand at all, and the clip is tracked forwards and
    backwards, so a hand first found late is followed back to where it entered. A wrong or
    lost hand is then the temporal clean-up's to drop (measured in docs/benchmarks.md)."""

    name = "mediapipe-0.10-legacy"  # what a sample's json records as its landmarks

    def __init__(
        self,
        min_detection_confidence: float = 0.1,
        min_tracking_confidence: float = 0.02,
        model_complexity: int = 1,
        both_directions: bool = True,
        upscale: float = 1.5,
    ):
        self.mp = require("mediapipe", "hands")
        self.both_directions = both_directions
        self.upscale = upscale
        self.settings = {
            "max_num_hands": 2,
            "model_complexity": model_complexity,
            "min_detection_confidence": min_detection_confidence,
            "min_tracking_confidence": min_tracking_confidence,
        }

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Per frame, the hands found (at most one per side). Tracking state starts fresh for
        every clip and direction, so a hand from the previous clip is never carried over."""
        forward = self._track(frames)
        if not self.both_directions:
            return forward
        backward = self._track(frames[::-1])[::-1]
        return [_one_per_side(a + b) for a, b in zip(forward, backward, strict=True)]

    def _track(self, frames: np.ndarray) -> list[list[Detection]]:
        """One pass of MediaPipe's tracking through `frames`. Frames are enlarged first: its
        landmark model reads a hand's box from the image it is given, and small egocentric
        hands come out sharper from a larger one (measured: 1.5x found the hand in twice as
        many frames of a real clip). Landmarks are normalised, so the pixels stay the clip's."""
        import cv2

        height, width = frames.shape[1:3]
        size = (round(width * self.upscale), round(height * self.upscale))
        out = []
        with self.mp.solutions.hands.Hands(static_image_mode=False, **self.settings) as hands:
            for frame in frames:
                view = frame[:, ::-1]
                if self.upscale != 1:
                    view = cv2.resize(view, size, interpolation=cv2.INTER_LINEAR)
                result = hands.process(np.ascontiguousarray(view))
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
        found.append(Detection(arm_side(pixels, width), float(label.score), pixels, metric))
    return _one_per_side(found)


def arm_side(pixels: np.ndarray, width: int) -> int:
    """The side (0 left, 1 right) of a hand in first-person view, from where its wrist is and
    where it points (see the module's docstring)."""
    direction = pixels[9] - pixels[0]
    pointing = direction[0] / max(float(np.linalg.norm(direction)), 1e-6)
    place = (width / 2 - pixels[0, 0]) / (width / 2)
    return 0 if pointing + PLACE_WEIGHT * place > 0 else 1


def _one_per_side(found: list[Detection]) -> list[Detection]:
    """The best hand per side; a second hand labelled the same side takes the free side unless
    it overlaps the first (then it is the same hand seen twice). Hands too small to be hands
    go first (`_plausible`)."""
    kept: dict[int, Detection] = {}
    for det in sorted(_plausible(found), key=lambda d: -d.score):
        if any(box_iou(det.box, other.box) > 0.3 for other in kept.values()):
            continue
        side = det.side if det.side not in kept else 1 - det.side
        if side not in kept:
            kept[side] = Detection(side, det.score, det.pixels, det.world)
    return [kept[s] for s in sorted(kept)]


def _plausible(found: list[Detection]) -> list[Detection]:
    """Without hands under `MIN_HAND_PX` or under `MIN_SIZE_RATIO` of the largest one: at low
    thresholds MediaPipe also reads a hand's fingers, or a knuckle, as a small hand of its own,
    and a lost track collapses onto a few pixels (both seen on the fixed-camera clip), while a
    person's two hands are of a size in first-person view."""
    sizes = [float(np.linalg.norm(d.box[2:] - d.box[:2])) for d in found]
    largest = max(sizes, default=0.0)
    return [
        d
        for d, size in zip(found, sizes, strict=True)
        if min(d.box[2:] - d.box[:2]) >= MIN_HAND_PX and size >= MIN_SIZE_RATIO * largest
    ]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def lift_to_camera(
    world: np.ndarray | None, pixels: np.ndarray, intrinsics: Intrinsics
) -> np.ndarray:
    """Place MediaPipe's hand-centred metric landmarks in the camera frame (21,3); NaN for a
    hand without them (a 2D-only detector), which nothing may read as a metric hand.

    The world landmarks carry the hand's shape and size but not its position; the translation
    t that makes them project onto the detected pixels solves a linear least-squares problem:
    fx (X + tx) = (u - cx)(Z + tz), likewise for y.
    """
    if world is None or not np.isfinite(world).all():
        return np.full((len(pixels), 3), np.nan)
    u = (pixels[:, 0] - intrinsics.cx) / intrinsics.fx
    v = (pixels[:, 1] - intrinsics.cy) / intrinsics.fy
    ones, zeros = np.ones_like(u), np.zeros_like(u)
    a = np.concatenate([np.stack([ones, zeros, -u], 1), np.stack([zeros, ones, -v], 1)])
    b = np.concatenate([u * world[:, 2] - world[:, 0], v * world[:, 2] - world[:, 1]])
    translation = np.linalg.lstsq(a, b, rcond=None)[0]
    return world + translation
