"""Where the interaction starts, and which recorded frames make each clip and the exploration.

A start is given in seconds from the first RGB frame ("12.5" or "12.5s") or as an RGB frame
index ("f300"). Clip frames are the recorded frames nearest to the recipe's frame times, so a
30 fps recording becomes an 8 fps clip without blending frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.errors import UnitError

CLIPS_FILE = "clips.json"


@dataclass(frozen=True)
class Clip:
    index: int
    start_ns: int
    frames: list[int]  # RGB frame indices, one per output frame
    prompt: str


def parse_start(text: str, times_ns: np.ndarray) -> int:
    """A start ("12.5", "12.5s" or "f300") as a device-clock timestamp in ns."""
    value = str(text).strip()
    try:
        if value.startswith("f"):
            index = int(value[1:])
            if not 0 <= index < len(times_ns):
                raise UnitError("clips", f"start {value}: the recording has {len(times_ns)} frames")
            return int(times_ns[index])
        return int(times_ns[0] + round(float(value.removesuffix("s")) * 1e9))
    except ValueError as exc:
        raise UnitError("clips", f"start '{value}' is neither seconds nor f<frame>") from exc


def clip_requests(root: Path, starts: list[str], prompt: str) -> list[tuple[str, str]]:
    """(start, prompt) pairs from the options, else from the capture's clips.json."""
    if starts:
        return [(s, prompt) for s in starts]
    path = root / CLIPS_FILE
    if path.exists():
        entries = json.loads(path.read_text()).get("clips", [])
        return [(str(e["start"]), str(e.get("prompt", prompt))) for e in entries]
    raise UnitError(
        "clips", f"no interaction start given (--start) and no {CLIPS_FILE} in {root.name}"
    )


def select_clip(
    times_ns: np.ndarray, start_ns: int, count: int, fps: Fraction, index: int, prompt: str
) -> Clip:
    """The recorded frames nearest to start + k / fps; fails when the recording ends too soon."""
    period = float(np.median(np.diff(times_ns))) if len(times_ns) > 1 else 1e9
    wanted = start_ns + np.round(np.arange(count) * 1e9 / float(fps)).astype(np.int64)
    nearest = np.clip(np.searchsorted(times_ns, wanted), 1, max(len(times_ns) - 1, 1))
    before = nearest - 1
    pick = np.where(
        np.abs(times_ns[before] - wanted) <= np.abs(times_ns[nearest] - wanted), before, nearest
    )
    off = np.abs(times_ns[pick] - wanted)
    if np.any(off > 0.75 * period):
        first_bad = wanted[off > 0.75 * period][0]
        raise UnitError(
            "clips",
            f"clip {index} needs frames at {(first_bad - times_ns[0]) / 1e9:.2f} s; the recording "
            f"spans 0-{(times_ns[-1] - times_ns[0]) / 1e9:.2f} s",
        )
    return Clip(index, int(start_ns), [int(i) for i in pick], prompt)


def exploration_frames(times_ns: np.ndarray, before_ns: int, count: int, minimum: int) -> list[int]:
    """Up to `count` frames spread evenly over everything recorded before the first action."""
    available = np.flatnonzero(times_ns < before_ns)
    if len(available) < minimum:
        raise UnitError(
            "exploration",
            f"{len(available)} frames before the interaction at "
            f"{(before_ns - times_ns[0]) / 1e9:.2f} s; the splat needs at least {minimum}",
        )
    picks = np.unique(np.round(np.linspace(0, len(available) - 1, min(count, len(available)))))
    return [int(available[int(i)]) for i in picks]
