"""Temporal clean-up of a hand track: drop one-frame jumps, bridge short gaps, nothing more.

Per-frame detectors flicker: a lone hand changes side for a few frames (MediaPipe's handedness
is unsure when a hand enters or leaves the frame), jumps for one frame (a wrong detection) or
vanishes for a frame or two behind an object. A continuous lone hand takes the side most of its
frames agree on; a spike that leaves and returns is dropped; a short gap between two good frames
is filled by interpolation; a long gap stays empty, because a hand invented over seconds would
teach the model motion that never happened. Only the frames themselves can fill a long gap:
`hands.follow` carries a lost hand along the image's own motion after this clean-up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dwm_data.hands.track import HandTrack


@dataclass(frozen=True)
class CleanupReport:
    relabelled: int  # hand-frames moved to the other side
    dropped: int  # hand-frames removed as jumps
    bridged: int  # hand-frames filled inside short gaps
    followed: int = 0  # hand-frames followed by optical flow after the clean-up (hands.follow)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def clean_track(
    track: HandTrack, max_gap: int = 2, jump: float = 0.5
) -> tuple[HandTrack, CleanupReport]:
    """The cleaned track and what changed. `jump` is in hand sizes (keypoint box diagonal):
    a frame farther than that from both neighbours, which agree with each other, is a spike.
    Gaps of up to `max_gap` frames between valid frames are interpolated linearly."""
    track = _copy(track)
    relabelled = _consistent_sides(track, jump, max_gap)
    dropped = sum(_drop_jumps(track, side, jump) for side in range(2))
    bridged = sum(_bridge_gaps(track, side, max_gap) for side in range(2))
    return track, CleanupReport(relabelled, dropped, bridged)


def _copy(track: HandTrack) -> HandTrack:
    return replace(
        track,
        valid=track.valid.copy(),
        keypoints_cam=track.keypoints_cam.copy(),
        keypoints_px=track.keypoints_px.copy(),
        mano={k: v.copy() for k, v in track.mano.items()},
        vertices=None if track.vertices is None else track.vertices.copy(),
        scores=None if track.scores is None else track.scores.copy(),
    )


def _per_frame_arrays(track: HandTrack) -> list[np.ndarray]:
    arrays = [track.keypoints_cam, track.keypoints_px, *track.mano.values()]
    return arrays + [a for a in (track.vertices, track.scores) if a is not None]


def _distance(track: HandTrack, side: int, a: int, b: int, side_b: int | None = None) -> float:
    """Mean keypoint distance between frames a and b (of `side`, or `side_b` in frame b), in
    hand sizes."""
    pa = track.keypoints_px[a, side]
    pb = track.keypoints_px[b, side if side_b is None else side_b]
    size = min(np.linalg.norm(np.ptp(pa, axis=0)), np.linalg.norm(np.ptp(pb, axis=0)))
    return float(np.linalg.norm(pa - pb, axis=1).mean() / max(size, 1.0))


def _consistent_sides(track: HandTrack, jump: float, max_gap: int) -> int:
    """Chain frames that show one hand moving continuously (gaps up to `max_gap`, steps under
    `jump`); every chain takes the side its detections agree on most (by score)."""
    alone = [
        (t, int(np.argmax(track.valid[t])))
        for t in range(track.frames)
        if track.valid[t].sum() == 1
    ]
    chains: list[list[tuple[int, int]]] = []
    for t, side in alone:
        if chains:
            last_t, last_side = chains[-1][-1]
            both_between = track.valid[last_t + 1 : t].all(axis=1).any()
            near = _distance(track, side, t, last_t, last_side) <= jump
            if t - last_t <= max_gap + 1 and near and not both_between:
                chains[-1].append((t, side))
                continue
        chains.append([(t, side)])
    moved = 0
    scores = track.scores if track.scores is not None else track.valid.astype(np.float32)
    for chain in chains:
        votes = np.zeros(2)
        for t, side in chain:
            votes[side] += max(float(np.nan_to_num(scores[t, side])), 1e-3)
        winner = int(np.argmax(votes))
        for t, side in chain:
            if side != winner:
                for array in [track.valid, *_per_frame_arrays(track)]:
                    array[t, [side, winner]] = array[t, [winner, side]]
                moved += 1
    return moved


def _drop_jumps(track: HandTrack, side: int, jump: float) -> int:
    valid = track.valid[:, side]
    spikes = [
        t
        for t in range(1, track.frames - 1)
        if valid[t - 1 : t + 2].all()
        and _distance(track, side, t, t - 1) > jump
        and _distance(track, side, t, t + 1) > jump
        and _distance(track, side, t - 1, t + 1) <= jump
    ]
    for t in spikes:
        track.valid[t, side] = False
        for array in _per_frame_arrays(track):
            array[t, side] = np.nan
    return len(spikes)


def _bridge_gaps(track: HandTrack, side: int, max_gap: int) -> int:
    frames = np.nonzero(track.valid[:, side])[0]
    filled = 0
    for before, after in zip(frames[:-1], frames[1:], strict=True):
        gap = after - before - 1
        if not 0 < gap <= max_gap:
            continue
        for t in range(before + 1, after):
            w = (t - before) / (after - before)
            for array in _per_frame_arrays(track):
                array[t, side] = (1 - w) * array[before, side] + w * array[after, side]
            track.valid[t, side] = True
            filled += 1
    return filled
