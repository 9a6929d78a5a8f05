"""Which source frames become which clip, and which clips are worth rendering.

The schedule is the official one (`rendering_strategies.build_frame_numbers` /
`build_clip_start_indices`): every `skip`-th source frame from the scene's first frame, clips of
`length` stepped frames starting every `stride` stepped frames. Clip selection works on object
poses sampled from the animation before anything is rendered, so `interaction` costs no render.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# An object "moves" when its pose changes by more than this (metres, or the equivalent in rotation
# matrix entries): keyed noise in the captures is far below, a drawer opening far above.
MOTION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Clip:
    index: int  # the official clip number: the file stem 00000, 00001, ...
    frames: tuple[int, ...]  # source frame numbers, one per output frame

    @property
    def start(self) -> int:
        return self.frames[0]


def stepped_frames(first: int, last: int, skip: int) -> list[int]:
    """Source frames that are rendered at all: `range(first, last + 1, skip)`."""
    return list(range(first, last + 1, skip))


def clips(first: int, last: int, skip: int, length: int, stride: int) -> list[Clip]:
    """Every official clip window of a recording (possibly none if it is short)."""
    stepped = stepped_frames(first, last, skip)
    starts = range(0, len(stepped) - length + 1, stride)
    return [Clip(k, tuple(stepped[s : s + length])) for k, s in enumerate(starts)]


def moving_objects(
    poses: Mapping[str, np.ndarray], frames: Sequence[int], clip: Clip
) -> dict[str, list[int]]:
    """Objects whose pose changes during `clip`, with the source frames at which they move.

    `poses[name]` is (len(frames), 4, 4) world matrices sampled at `frames` (the stepped frames).
    A frame "moves" when the pose differs from the previous sampled frame.
    """
    position = {frame: i for i, frame in enumerate(frames)}
    rows = [position[f] for f in clip.frames]
    out: dict[str, list[int]] = {}
    for name, matrices in poses.items():
        track = matrices[rows]
        step = np.abs(np.diff(track, axis=0)).max(axis=(1, 2))
        moved = [clip.frames[i + 1] for i in np.flatnonzero(step > MOTION_TOLERANCE)]
        if moved:
            out[name] = moved
    return out


def state_key(poses: Mapping[str, np.ndarray], frames: Sequence[int], frame: int) -> str:
    """A name for the object state at `frame`: equal states give equal keys, so the static
    frames rendered for one clip are reused by any clip that starts in the same state."""
    import hashlib

    row = list(frames).index(frame)
    digest = hashlib.sha1()
    for name in sorted(poses):
        digest.update(name.encode())
        digest.update(np.round(poses[name][row] / MOTION_TOLERANCE).astype(np.int64).tobytes())
    return digest.hexdigest()[:12]
