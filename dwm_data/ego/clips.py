"""Which videos, and which stretch of each: the window of the recipe's length where hands act.

A video is resampled to the recipe's rate as ffmpeg's `fps` filter does (`select_frames`); the
clip is the window of the recipe's frame count with the most frames showing a hand (the first
such window; with `lead_frames`, one whose first hand comes at least that many frames in).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.errors import DwmDataError, UnitError
from dwm_data.video import VideoError, frame_times, select_frames

# Containers cameras, phones and glasses write, all read by PyAV; matched in any case.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


def find_videos(source: Path) -> list[tuple[str, Path]]:
    """(key, path) of the videos under a folder or in a list file, in a stable order."""
    if source.is_file():
        entries = [
            line.strip()
            for line in source.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        videos = [(Path(e).with_suffix("").as_posix(), source.parent / e) for e in entries]
    elif source.is_dir():
        videos = [
            (path.relative_to(source).with_suffix("").as_posix(), path)
            for path in sorted(source.rglob("*"))
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()
        ]
    else:
        raise DwmDataError(f"build-ego: {source} is neither a folder nor a list file")
    if not videos:
        raise DwmDataError(f"build-ego: no videos ({', '.join(VIDEO_SUFFIXES)}) in {source}")
    return videos


def resampled_frames(path: Path, rate: Fraction | int, count: int) -> list[int]:
    """Source frame indices of the whole video at `rate`; a video with fewer than `count`
    such frames is a recorded failure (with `select_frames`' reason)."""
    timing = frame_times(path)
    select_frames(timing.times, timing.end, rate, count)  # raises "clip too short: ..."
    longest = int((timing.end - timing.times[0]) * Fraction(rate)) + 1
    for total in range(longest, count - 1, -1):
        try:
            return select_frames(timing.times, timing.end, rate, total)
        except VideoError:
            continue
    raise AssertionError("unreachable: the recipe's count was selectable")


def choose_window(has_hand: np.ndarray, count: int, lead: int) -> int:
    """The first output frame of the clip; `has_hand` (N,) per resampled frame."""
    best, start = -1, None
    for first in range(len(has_hand) - count + 1):
        window = has_hand[first : first + count]
        if not window.any() or (lead and window[:lead].any()):
            continue
        if int(window.sum()) > best:
            best, start = int(window.sum()), first
    if start is None:
        needs = f" after {lead} frames without" if lead else ""
        raise UnitError(
            "hands",
            f"no window of {count} frames with a hand{needs} in the {len(has_hand)} frames",
        )
    return start
