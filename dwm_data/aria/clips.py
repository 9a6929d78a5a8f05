"""Where the interaction starts, and which recorded frames make each clip and the exploration.

A start is given in seconds from the first RGB frame ("12.5" or "12.5s") or as an RGB frame
index ("f300"). Clip frames are those ffmpeg's `fps` filter would pick from the recording cut
at the start (`-ss`), the same choice every source makes, so a 30 fps recording becomes an
8 fps clip without blending frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.errors import UnitError
from dwm_data.video import VideoError, select_frames

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
    """The frames `select_frames` picks from the recording's frames at or after the start (the
    last one shown for a median frame period); fails when the recording ends too soon."""
    first = int(np.searchsorted(times_ns, start_ns))
    period = int(np.median(np.diff(times_ns))) if len(times_ns) > 1 else 10**9
    times = [Fraction(int(t) - start_ns, 10**9) for t in times_ns[first:]]
    end = Fraction(int(times_ns[-1]) + period - start_ns, 10**9)
    try:
        picks = select_frames(times, end, fps, count)
    except VideoError as exc:
        raise UnitError(
            "clips",
            f"clip {index} needs {float(count / fps):.2f} s from {(start_ns - times_ns[0]) / 1e9:.2f} s; "
            f"the recording spans 0-{(times_ns[-1] - times_ns[0]) / 1e9:.2f} s",
        ) from exc
    return Clip(index, int(start_ns), [first + i for i in picks], prompt)


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
