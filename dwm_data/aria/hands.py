"""Aria hand tracking (MPS v1 and v2 CSVs, or a Gen2 recording's on-device tracking, which has
the same landmarks) as 21 OpenPose-order keypoints in the camera frame.

Aria lists the five fingertips first, then the wrist, then the remaining joints from the base
outwards, then the palm centre; the thumb has only two joints besides its tip. The OpenPose/MANO
order wants wrist, then four points per finger from base to tip, so the thumb's first point (the
CMC joint, which Aria does not track) is placed halfway between the wrist and Aria's first thumb
joint, and the palm centre is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics, project
from dwm_data.errors import UnitError
from dwm_data.extras import require
from dwm_data.hands.track import HandTrack

# OpenPose index -> Aria landmark index (-1: the thumb CMC, interpolated).
ARIA_TO_OPENPOSE = np.array(
    [5, -1, 6, 7, 0, 8, 9, 10, 1, 11, 12, 13, 2, 14, 15, 16, 3, 17, 18, 19, 4]
)
ARIA_WRIST, ARIA_THUMB_BASE = 5, 6
MAX_GAP_NS = 100_000_000  # as mps.interpolate_hand_tracking_result: no hand across a longer gap


def aria_to_openpose(landmarks: np.ndarray) -> np.ndarray:
    """(..., 21, 3) Aria-order landmarks -> (..., 21, 3) OpenPose order."""
    out = landmarks[..., np.maximum(ARIA_TO_OPENPOSE, 0), :].copy()
    out[..., 1, :] = 0.5 * (landmarks[..., ARIA_WRIST, :] + landmarks[..., ARIA_THUMB_BASE, :])
    return out


@dataclass(frozen=True)
class HandTracking:
    times_ns: np.ndarray  # (M,)
    valid: np.ndarray  # (M, 2) bool, side 0 left
    landmarks_device: np.ndarray  # (M, 2, 21, 3) OpenPose order, device frame, metres
    confidence: np.ndarray  # (M, 2)

    @classmethod
    def read(cls, path: Path, min_confidence: float = 0.0) -> HandTracking:
        """Either CSV version: projectaria-tools' reader tells them apart by their header."""
        mps = require("projectaria_tools.core.mps", "aria")
        results = mps.hand_tracking.read_hand_tracking_results(str(path))
        if not results:
            raise UnitError("hands", f"{path.name} holds no hand-tracking rows")
        return cls.from_results(results, min_confidence)

    @classmethod
    def from_results(cls, results: list, min_confidence: float = 0.0) -> HandTracking:
        """projectaria-tools `HandTrackingResult`s, from an MPS CSV or a VRS hand-pose stream."""
        count = len(results)
        times = np.empty(count, np.int64)
        valid = np.zeros((count, 2), bool)
        landmarks = np.full((count, 2, 21, 3), np.nan)
        confidence = np.zeros((count, 2))
        for i, result in enumerate(results):
            times[i] = int(result.tracking_timestamp.total_seconds() * 1e6) * 1000
            for side, hand in enumerate((result.left_hand, result.right_hand)):
                if hand is None or hand.confidence <= 0 or hand.confidence < min_confidence:
                    continue
                points = np.asarray(hand.landmark_positions_device, dtype=np.float64)
                valid[i, side] = True
                confidence[i, side] = hand.confidence
                landmarks[i, side] = aria_to_openpose(points)
        return cls(times, valid, landmarks, confidence)

    def at(self, t_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Valid (F, 2), device-frame landmarks (F, 2, 21, 3) and confidence (F, 2), linearly
        interpolated between the neighbouring results when both have the hand within 100 ms."""
        t = np.asarray(t_ns, dtype=np.int64)
        hi = np.clip(np.searchsorted(self.times_ns, t), 0, len(self.times_ns) - 1)
        lo = np.clip(hi - 1, 0, None)
        t_lo, t_hi = self.times_ns[lo], self.times_ns[hi]
        w = np.where(t_hi > t_lo, (t - t_lo) / np.maximum(t_hi - t_lo, 1), 1.0).clip(0.0, 1.0)
        # a neighbour matters only when it has weight; it must hold the hand and be near
        ok_lo = (w >= 1)[:, None] | (self.valid[lo] & (t - t_lo <= MAX_GAP_NS)[:, None])
        ok_hi = (w <= 0)[:, None] | (self.valid[hi] & (t_hi - t <= MAX_GAP_NS)[:, None])
        inside = (t >= self.times_ns[0]) & (t <= self.times_ns[-1])
        valid = ok_lo & ok_hi & inside[:, None]
        known = np.nan_to_num(self.landmarks_device)
        blend = (1 - w)[:, None, None, None] * known[lo] + w[:, None, None, None] * known[hi]
        points = np.where(valid[..., None, None], blend, np.nan)
        weight_conf = (1 - w)[:, None] * self.confidence[lo] + w[:, None] * self.confidence[hi]
        confidence = np.where(valid, weight_conf, 0.0)
        return valid, points, confidence


def hand_track(
    tracking: HandTracking,
    times_ns: np.ndarray,
    device_camera: np.ndarray,
    intrinsics: Intrinsics,
) -> HandTrack:
    """The hands at the frame times, in the frame and pixels of the (upright) output camera.

    Landmarks are in the device frame, so the world pose is not needed: camera = inv(T_device_cam).
    """
    valid, device_points, confidence = tracking.at(times_ns)
    camera_device = np.linalg.inv(device_camera)
    cam = device_points @ camera_device[:3, :3].T + camera_device[:3, 3]
    px = project(cam, intrinsics)
    valid = valid & np.isfinite(px).all(axis=(-1, -2))
    cam[~valid] = np.nan
    px[~valid] = np.nan
    return HandTrack(
        valid=valid,
        keypoints_cam=cam.astype(np.float32),
        keypoints_px=px.astype(np.float32),
        scores=np.where(valid, confidence, 0.0).astype(np.float32),
    )


def hand_masks(track: HandTrack, width: int, height: int, margin: float = 0.25) -> np.ndarray:
    """(F, H, W) True where no hand is: the keypoints' convex hull grown by `margin` of its size,
    so fingers' flesh between the joints is covered too."""
    cv2 = require("cv2", "aria")
    keep = np.ones((track.frames, height, width), bool)
    for f in range(track.frames):
        for side in range(2):
            if not track.valid[f, side]:
                continue
            points = track.keypoints_px[f, side].astype(np.float64)
            centre = points.mean(axis=0)
            size = np.ptp(points, axis=0).max()
            grown = centre + (points - centre) * (1 + margin)
            hull = cv2.convexHull(np.round(grown).astype(np.int32))
            mask = np.zeros((height, width), np.uint8)
            cv2.fillConvexPoly(mask, hull, 1)
            pad = max(1, int(round(size * margin / 2)))  # thin fingers: the hull alone misses them
            mask = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
            keep[f] &= mask == 0
    return keep
