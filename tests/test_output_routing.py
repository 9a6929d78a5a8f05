"""Third-party output in workers goes to the task log, not the terminal.

Libraries such as TFLite, absl and Blender print from C straight to file descriptors 1 and 2,
which `contextlib.redirect_stdout` never sees; the builder here writes the same way."""

from __future__ import annotations

import os
from collections.abc import Iterable

from dwm_data.build import build
from dwm_data.builder import Builder, BuilderOptions, UnitContext, WorkUnit
from dwm_data.sample import Sample

NOISE = b"W0000 00:00 inference_feedback_manager.cc:114] Feedback manager requires a model"


class NoisyBuilder(Builder):
    """Prints to fds 1 and 2 like a C library while planning (in the driver, as Blender does
    opening a .blend) and in each of two units (in the workers); yields no sample."""

    Options = BuilderOptions

    def plan(self) -> list[WorkUnit]:
        os.write(2, NOISE + b" (planning)\n")
        return [WorkUnit("a"), WorkUnit("b")]

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        os.write(1, NOISE + b" (stdout)\n")
        os.write(2, NOISE + b" (stderr)\n")
        return []


def test_c_level_output_lands_in_the_run_logs(tmp_path, tiny_recipe, capfd):
    result = build("test_output_routing:NoisyBuilder", {}, tiny_recipe, tmp_path, progress=False)
    terminal = capfd.readouterr()
    assert result.ok and result.status.done == 2
    assert NOISE.decode() not in terminal.out + terminal.err
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert logs.count(NOISE.decode()) == 5  # both units, both streams, planning: nothing lost
    assert NOISE.decode() in (tmp_path / "logs" / "plan.log").read_text()
