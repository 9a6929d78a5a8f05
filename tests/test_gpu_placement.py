"""Cycles is pointed at the GPU the executor gave the task (OptiX, then CUDA) and falls back to
the CPU only with a warning; checked on bpy's real Cycles preferences, which on this machine list
no GPU device. The executors' narrowing of CUDA_VISIBLE_DEVICES is tested on real clusters
(test_slurm.py, test_ray_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CYCLES = """
import logging, sys
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
from dwm_data import blender
bpy = blender.import_bpy()
scene = bpy.context.scene
device = blender.configure_cycles(scene, 64, 48, 1, True, 0)
prefs = bpy.context.preferences.addons["cycles"].preferences
print("device", device, scene.cycles.device, scene.cycles.denoiser)
print("listed", sorted({d.type for d in prefs.devices}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("visible", ["", "0"])
def test_cycles_without_a_usable_gpu_renders_on_the_cpu_and_says_so(visible):
    pytest.importorskip("bpy")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
    done = subprocess.run(
        [sys.executable, "-c", CYCLES], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "device CPU CPU OPENIMAGEDENOISE" in done.stdout, done.stdout
    assert "listed ['CPU']" in done.stdout  # Cycles' own list: no OptiX nor CUDA device here
    warning = f"WARNING Cycles found no OptiX or CUDA device (CUDA_VISIBLE_DEVICES={visible!r})"
    assert warning in done.stdout, done.stdout
