"""Benchmarks behind `dwm-data bench <topic>`: each `main(quick) -> [(figure, value)]` measures
ours against a baseline on the same input in one run, and reports ratios (machines are noisy)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of a and b, alternating so that drift on a busy machine hits both alike."""
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return statistics.median(times_a), statistics.median(times_b)
