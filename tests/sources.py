"""Sources for exercising the run machinery: real samples from synthetic frames, with the
misbehaviours a real builder can have (slowness, hangs, crashes, bad units) on request.

Workers are spawned processes, so these are addressed as "sources:<Class>" (tests/ is on the
path the parent passes to its children).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from dwm_data.builder import Builder, BuilderOptions, UnitContext, WorkUnit
from dwm_data.errors import UnitError
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_data.sample import Sample, make_key, make_sample


class SyntheticOptions(BuilderOptions):
    units: int = 6
    clips_per_unit: int = 1
    delay: float = 0.0  # seconds per unit, standing in for slow rendering
    hang: list[int] = []  # units that never finish (for the timeout)
    crash: list[int] = []  # units that kill their worker process
    bad: list[int] = []  # units that raise a UnitError
    empty: list[int] = []  # units that rightly produce no sample
    lenient: bool = False  # bad units give a sample anyway (a loose option)


class SyntheticBuilder(Builder):
    name = "synthetic"
    Options = SyntheticOptions
    loose_options = frozenset({"lenient"})

    def plan(self) -> list[WorkUnit]:
        return [WorkUnit(f"unit{i:03d}", {"index": i}) for i in range(self.options.units)]

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        index = unit.payload["index"]
        if index in self.options.bad and not self.options.lenient:
            raise UnitError("input", f"unit {index} is bad on purpose")
        if index in self.options.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if index in self.options.hang:
            time.sleep(3600)
        time.sleep(self.options.delay)
        video = self.recipe.video
        clips = 0 if index in self.options.empty else self.options.clips_per_unit
        for clip in range(clips):
            frames = synthetic_triplet(
                video.frames, video.width, video.height, seed=index * 100 + clip
            )
            yield make_sample(
                make_key("synthetic", index, clip),
                frames,
                video.rate,
                self.recipe.codecs.to_codecs(),
                f"unit {index} clip {clip}",
                {
                    "source": {
                        "name": "synthetic",
                        "unit": index,
                        "clip": clip,
                        "license": "CC0-1.0",
                    }
                },
            )
