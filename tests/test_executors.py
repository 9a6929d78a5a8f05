"""Cluster backends run the same tasks from the same run folder as the local one."""

import os
import subprocess
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.errors import DwmDataError
from dwm_data.executors.slurm import array_script
from dwm_data.recipe import load_recipe
from dwm_data.runs.folder import RunFolder
from dwm_data.runs.plan import make_plan, prepare
from dwm_data.runs.status import finalize, run_status

TESTS = Path(__file__).parent
BUILDER = "sources:SyntheticBuilder"


@pytest.fixture(autouse=True)
def _sources_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


@pytest.mark.slow
def test_ray_backend_builds_the_same_dataset(tmp_path):
    pytest.importorskip("ray")
    recipe = load_recipe("tiny", ["run.executor=ray", "run.workers=2", "run.tasks=2"])
    result = build(BUILDER, {"units": 4, "bad": [1]}, recipe, tmp_path / "run", progress=False)
    assert result.status.samples == 3 and result.status.finished
    assert [f["unit"] for f in result.status.failures] == ["unit001"]


def test_slurm_array_script_runs_every_task_from_the_run_folder(tmp_path):
    recipe = load_recipe(
        "tiny", ["run.executor=slurm", "run.tasks=3", "run.slurm.partition=gpu", "run.slurm.gpus=1"]
    )
    folder = RunFolder(tmp_path / "run")
    plan, _ = prepare(folder, make_plan(BUILDER, {"units": 5}, recipe))
    script = array_script(folder.root, [0, 1, 2], recipe.run, retry_failed=False)
    assert "#SBATCH --array=0-2%2" in script and "#SBATCH --partition=gpu" in script
    assert (
        "#SBATCH --gres=gpu:1" in script
        and f"--output={folder.root}/logs/slurm-%A_%a.out" in script
    )
    path = tmp_path / "array.sbatch"
    path.write_text(script)
    for element in range(3):  # what Slurm does: the same script once per array index
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(element)}
        subprocess.run(["bash", str(path)], check=True, env=env, capture_output=True)
    status = run_status(folder.root)
    assert status.finished and status.samples == 5 and len(plan.tasks) == 3
    assert finalize(folder.root, 0.0)["totals"]["samples"] == 5


def test_slurm_without_sbatch_says_where_the_script_is(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    recipe = load_recipe("tiny", ["run.executor=slurm"])
    with pytest.raises(DwmDataError, match=r"sbatch not found.*array-0.sbatch"):
        build(BUILDER, {"units": 2}, recipe, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "slurm" / "array-0.sbatch").exists()


def test_an_element_that_asked_no_gpu_sees_none_and_detach_is_for_slurm(tmp_path):
    recipe = load_recipe("tiny", ["run.executor=slurm"])
    script = array_script(tmp_path, [0], recipe.run, retry_failed=False)
    assert "export CUDA_VISIBLE_DEVICES=\n" in script and "--gres" not in script
    with pytest.raises(DwmDataError, match="detach needs the slurm executor"):
        load_recipe("tiny", ["run.detach=true"])
    assert load_recipe("tiny", ["run.executor=slurm", "run.detach=true"]).run.detach


def test_status_names_the_recorded_slurm_jobs_on_a_machine_without_slurm(tmp_path, monkeypatch):
    from dwm_data.executors.slurm import JobBook, job_summaries

    folder = RunFolder(tmp_path / "run")
    folder.make()
    JobBook(folder).record("4242", [0, 1, 2], folder.root / "slurm" / "array-0.sbatch")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert job_summaries(folder) == ["slurm job 4242: tasks 0-2"]
