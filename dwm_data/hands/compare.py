"""Our hand video against an official one: is a hand drawn where, when and on the side it should be.

The official hand videos (DWM's release) are HaMeR meshes in the side colours on black, so a
pixel's side is read from its colour (left green, right red) in both videos alike, and all
figures come from the pixels alone. The official meshes come from another estimator, so the
measure forgives a hand drawn a little off (`radius`): precision asks that our pixels lie near
an official hand pixel, not on it; only the IoU asks for the same pixels (meaningful for meshes;
a skeleton covers a fraction of a hand's area).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this a channel is codec noise on the black background (the official videos are H.264).
DARK = 40
MIN_PIXELS = 20  # a frame shows a hand when it has at least this many hand pixels


@dataclass(frozen=True)
class HandVideoScores:
    official_frames: int  # frames where the official video shows a hand
    our_frames: int  # frames where ours does
    recall: float  # of the official's hand frames, the share where ours shows a hand
    precision: float  # share of our hand pixels within `radius` of an official hand pixel
    # the same, counting only frames where the official shows a hand: the official videos miss
    # hands too (a hand inside a drawer, at the border), which `precision` counts against ours
    precision_official_frames: float
    side_agreement: float  # of those near pixels, the share whose side matches the nearest one
    iou: float  # hand pixels, pooled over the clip

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def side_masks(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) boolean masks (F,H,W) of an RGB hand video: a lit pixel is left when green
    outweighs red (0.5, 0.8, 0.5), right when red outweighs green (0.8, 0.4, 0.4)."""
    video = video.astype(np.int16)
    lit = video.max(axis=-1) >= DARK
    green = video[..., 1] > video[..., 0]
    return lit & green, lit & ~green


def compare_hand_videos(
    ours: np.ndarray, official: np.ndarray, radius: float = 20.0
) -> HandVideoScores:
    """Scores of `ours` against `official`, both (F,H,W,3) uint8 RGB of the same size."""
    import cv2

    if ours.shape != official.shape:
        raise ValueError(f"hand videos differ in shape: {ours.shape} vs {official.shape}")
    our_left, our_right = side_masks(ours)
    off_left, off_right = side_masks(official)
    our_any, off_any = our_left | our_right, off_left | off_right
    official_frames = off_any.reshape(len(ours), -1).sum(axis=1) >= MIN_PIXELS
    our_frames = our_any.reshape(len(ours), -1).sum(axis=1) >= MIN_PIXELS
    near = agree = drawn = drawn_official = inter = union = 0
    for t in range(len(ours)):
        inter += int((our_any[t] & off_any[t]).sum())
        union += int((our_any[t] | off_any[t]).sum())
        drawn += int(our_any[t].sum())
        if not our_any[t].any() or not off_any[t].any():
            continue
        drawn_official += int(our_any[t].sum())
        to_left, to_right = (_distance_to(m, cv2) for m in (off_left[t], off_right[t]))
        close = our_any[t] & (np.minimum(to_left, to_right) <= radius)
        official_left = to_left < to_right
        near += int(close.sum())
        agree += int((close & (our_left[t] == official_left)).sum())
    hits = official_frames & our_frames
    return HandVideoScores(
        official_frames=int(official_frames.sum()),
        our_frames=int(our_frames.sum()),
        recall=float(hits.sum() / max(official_frames.sum(), 1)),
        precision=float(near / drawn) if drawn else 0.0,
        precision_official_frames=float(near / drawn_official) if drawn_official else 0.0,
        side_agreement=float(agree / near) if near else 0.0,
        iou=float(inter / union) if union else 0.0,
    )


def _distance_to(mask: np.ndarray, cv2) -> np.ndarray:
    """Per pixel, the distance to the nearest pixel of `mask` (inf when it is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
