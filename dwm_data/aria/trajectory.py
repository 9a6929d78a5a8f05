"""Device trajectories (MPS closed loop, or a Gen2 recording's own VIO), interpolated at frame
timestamps.

MPS's trajectory is sampled at 1 kHz, Gen2's high-frequency VIO at 800 Hz; nerfstudio takes the next sample, which is fine for a pose
but not for a rolling-shutter frame time, so we slerp between the two neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.aria.conventions import se3_matrix
from dwm_data.errors import UnitError
from dwm_data.extras import require

# Frames may sit a hair outside the trajectory (ADT's ground truth starts 0.1 ms after the first
# RGB frame); up to this much the end pose is used, beyond it the frame is not covered.
SLACK_NS = 2_000_000


@dataclass(frozen=True)
class Trajectory:
    times_ns: np.ndarray  # (N,) int64, device clock, increasing
    world_device: np.ndarray  # (N, 4, 4)

    @classmethod
    def read(cls, path: Path) -> Trajectory:
        mps = require("projectaria_tools.core.mps", "aria")
        poses = mps.read_closed_loop_trajectory(str(path))
        if not poses:
            raise UnitError("trajectory", f"{path.name} holds no poses")
        times = [int(p.tracking_timestamp.total_seconds() * 1e6) * 1000 for p in poses]
        return cls.from_poses(times, [se3_matrix(p.transform_world_device) for p in poses])

    @classmethod
    def from_poses(cls, times_ns: list[int], world_device: list[np.ndarray]) -> Trajectory:
        """Poses in any order (VIO streams and CSVs are not always sorted)."""
        times = np.asarray(times_ns, dtype=np.int64)
        order = np.argsort(times, kind="stable")
        return cls(times[order], np.stack(world_device)[order])

    def covers(self, t_ns: np.ndarray) -> bool:
        t = np.asarray(t_ns)
        return bool(
            np.all((t >= self.times_ns[0] - SLACK_NS) & (t <= self.times_ns[-1] + SLACK_NS))
        )

    def at(self, t_ns: np.ndarray | list[int]) -> np.ndarray:
        """(M, 4, 4) T_world_device at the given times; fails outside the trajectory."""
        rotation = require("scipy.spatial.transform", "aria").Rotation
        t = np.asarray(t_ns, dtype=np.int64)
        if not self.covers(t):
            outside = t[(t < self.times_ns[0] - SLACK_NS) | (t > self.times_ns[-1] + SLACK_NS)]
            raise UnitError(
                "trajectory",
                f"trajectory covers {self.times_ns[0] / 1e9:.3f}-{self.times_ns[-1] / 1e9:.3f} s, "
                f"frames need {outside.min() / 1e9:.3f}-{outside.max() / 1e9:.3f} s",
            )
        t = np.clip(t, self.times_ns[0], self.times_ns[-1])
        if len(self.times_ns) == 1:
            return np.repeat(self.world_device[:1], len(t), axis=0)
        hi = np.clip(np.searchsorted(self.times_ns, t, side="left"), 1, len(self.times_ns) - 1)
        lo = hi - 1
        span = (self.times_ns[hi] - self.times_ns[lo]).astype(np.float64)
        w = np.where(span > 0, (t - self.times_ns[lo]) / np.where(span > 0, span, 1), 0.0)
        r0 = rotation.from_matrix(self.world_device[lo, :3, :3])
        delta = (r0.inv() * rotation.from_matrix(self.world_device[hi, :3, :3])).as_rotvec()
        rot = r0 * rotation.from_rotvec(delta * w[:, None])
        out = np.tile(np.eye(4), (len(t), 1, 1))
        out[:, :3, :3] = rot.as_matrix()
        out[:, :3, 3] = (1 - w)[:, None] * self.world_device[lo, :3, 3] + w[
            :, None
        ] * self.world_device[hi, :3, 3]
        return out
