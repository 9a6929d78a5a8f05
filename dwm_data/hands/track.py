"""The per-frame hand track every backend produces and every renderer reads.

One type for all sources keeps `hands.npz` identical whether the hands came from MediaPipe,
HaMeR, a MANO fit, Aria MPS or a TRUMANS body, and lets the clean-up and renderers stay
source-agnostic. Side index 0 is the left hand, 1 the right (as in `dwm_data.sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dwm_data.sample import pack_hands, unpack_hands

SIDES = ("left", "right")
NUM_KEYPOINTS = 21
# Bones of the 21-keypoint MANO/OpenPose hand: wrist, then thumb/index/middle/ring/pinky,
# four joints each from the base to the tip.
FINGERS = tuple(tuple(range(1 + 4 * f, 5 + 4 * f)) for f in range(5))
BONES = tuple((0 if j == finger[0] else j - 1, j) for finger in FINGERS for j in finger)
MANO_KEYS = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class HandTrack:
    """Hands of one clip: validity (F,2), keypoints in the camera frame (F,2,21,3, metres,
    OpenCV axes) and in pixels (F,2,21,2), plus MANO parameters and vertices when the backend
    has them. Invalid entries are NaN so that nothing reads a stale hand by accident."""

    valid: np.ndarray
    keypoints_cam: np.ndarray
    keypoints_px: np.ndarray
    mano: dict[str, np.ndarray] = field(default_factory=dict)  # each (F, 2, ...), axis-angle
    vertices: np.ndarray | None = None  # (F, 2, V, 3) camera frame, metres
    scores: np.ndarray | None = None  # (F, 2) detector confidence, when the backend gives one

    def __post_init__(self) -> None:
        frames = self.valid.shape[0]
        expected = {
            "valid": (frames, 2),
            "keypoints_cam": (frames, 2, NUM_KEYPOINTS, 3),
            "keypoints_px": (frames, 2, NUM_KEYPOINTS, 2),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"HandTrack.{name} must be {shape}, got {getattr(self, name).shape}"
                )
        for name, value in self.mano.items():
            if value.shape[:2] != (frames, 2):
                raise ValueError(f"HandTrack.mano[{name!r}] must start with ({frames}, 2)")
        if self.vertices is not None and self.vertices.shape[:2] != (frames, 2):
            raise ValueError(f"HandTrack.vertices must start with ({frames}, 2)")
        self.valid = self.valid.astype(bool)

    @classmethod
    def empty(cls, frames: int, with_vertices: int | None = None) -> HandTrack:
        """A track with no hands, to be filled frame by frame by a backend."""
        nan = np.full
        return cls(
            valid=np.zeros((frames, 2), bool),
            keypoints_cam=nan((frames, 2, NUM_KEYPOINTS, 3), np.nan, np.float32),
            keypoints_px=nan((frames, 2, NUM_KEYPOINTS, 2), np.nan, np.float32),
            vertices=None
            if with_vertices is None
            else nan((frames, 2, with_vertices, 3), np.nan, np.float32),
            scores=np.zeros((frames, 2), np.float32),
        )

    @property
    def frames(self) -> int:
        return self.valid.shape[0]

    def select(self, indices: np.ndarray | list[int]) -> HandTrack:
        """The track at the given frame positions (e.g. after resampling to the recipe's fps)."""
        idx = np.asarray(indices)
        return replace(
            self,
            valid=self.valid[idx],
            keypoints_cam=self.keypoints_cam[idx],
            keypoints_px=self.keypoints_px[idx],
            mano={k: v[idx] for k, v in self.mano.items()},
            vertices=None if self.vertices is None else self.vertices[idx],
            scores=None if self.scores is None else self.scores[idx],
        )

    def rescaled(
        self, scale_x: float, scale_y: float, offset_x: float = 0.0, offset_y: float = 0.0
    ) -> HandTrack:
        """The track with pixels mapped to a resized (and shifted: letterbox bars, crops) image
        of the same camera; pixel centres stay centres. Camera-frame data are unchanged."""
        scale, offset = np.array([scale_x, scale_y]), np.array([offset_x, offset_y])
        return replace(self, keypoints_px=(self.keypoints_px + 0.5) * scale - 0.5 + offset)

    def to_npz(self) -> bytes:
        """`hands.npz` bytes (schema v1); MANO parameters go in as `mano_<name>` arrays.

        Vertices are left out: they follow from the MANO parameters, and 778 vertices per hand
        and frame would outweigh the videos."""
        extra = {f"mano_{k}": v.astype(np.float32) for k, v in self.mano.items()}
        if self.scores is not None:
            extra["scores"] = self.scores.astype(np.float32)
        return pack_hands(self.valid, self.keypoints_cam, self.keypoints_px, **extra)

    @classmethod
    def from_npz(cls, data: bytes) -> HandTrack:
        arrays = unpack_hands(data)
        return cls(
            valid=arrays["valid"],
            keypoints_cam=arrays["keypoints_cam"],
            keypoints_px=arrays["keypoints_px"],
            mano={k.removeprefix("mano_"): v for k, v in arrays.items() if k.startswith("mano_")},
            scores=arrays.get("scores"),
        )
