"""The Slurm executor on a real Slurm: a one-node cluster (slurmctld, slurmd, munge) started for
these tests on this machine, with MaxArraySize 8 and two GPUs as generic resources.

Runs are submitted with sbatch and followed with squeue as on any cluster; elements are
cancelled with scancel and killed past their time limit by Slurm itself, and their tasks must be
resubmitted until every sample is there once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import slurm_cluster

from dwm_data.build import build
from dwm_data.executors.slurm import JobBook, finished_states, queued
from dwm_data.fixtures.dwm_layout import write_synthetic_layout
from dwm_data.recipe import load_recipe
from dwm_data.runs.folder import RunFolder
from dwm_data.store import read_samples

TESTS = Path(__file__).parent
PROJECT = TESTS.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = slurm_cluster.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"local Slurm unavailable under CI: {why}")
        pytest.skip(why)
    cluster = slurm_cluster.LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()  # daemons go even when a test (or the start) failed


@pytest.fixture(autouse=True)
def _on_the_cluster(slurm, monkeypatch):
    """Client commands find the cluster; elements (which get the submitter's environment, as
    sbatch's default --export=ALL gives) find the test sources."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(TESTS))


def recipe(*overrides: str):
    return load_recipe(
        "tiny",
        ["run.executor=slurm", "run.slurm.poll_seconds=1", "run.slurm.cpus_per_task=1"]
        + ["run.slurm.mem=500M", "shards.maxcount=1", *overrides],
    )


def assert_every_sample_once(out: Path, samples: int) -> None:
    keys = Counter(s.key for s in read_samples(out))
    assert len(keys) == samples and set(keys.values()) == {1}
    assert json.loads((out / "dataset.json").read_text())["totals"]["samples"] == samples
    assert not list((out / "deaths").glob("*.jsonl"))  # no element's end was charged to a unit


def dwm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=PROJECT, capture_output=True, text=True
    )


def test_a_12_unit_import_detached_then_attached_has_every_sample_once(tmp_path):
    source = tmp_path / "layout"
    write_synthetic_layout(source, clips=12, frames=17, width=64, height=48)
    out = tmp_path / "run"
    command = ["import-dwm", str(source), str(out), "--recipe", "tiny", "--executor", "slurm"]
    command += ["--tasks", "4", "--quiet", "--set", "run.slurm.poll_seconds=1"]
    command += ["--set", "run.slurm.mem=500M", "--set", "run.slurm.cpus_per_task=1"]
    started = time.time()
    detached = dwm(*command, "--detach")
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert "submitted to Slurm" in detached.stdout and not (out / "dataset.json").exists()
    (job,) = JobBook(RunFolder(out)).jobs()
    assert job["tasks"] == [0, 1, 2, 3]
    shown = dwm("status", str(out)).stdout
    assert f"slurm job {job['job']}:" in shown, shown
    attached = dwm(*command)  # while the job runs: follows it, submits nothing
    assert attached.returncode == 0, attached.stdout + attached.stderr
    print(f"12 units, 4 elements, detach + attach: {time.time() - started:.1f} s")
    assert [j["job"] for j in JobBook(RunFolder(out)).jobs()] == [job["job"]]
    assert_every_sample_once(out, 12)
    assert len(list((out / "logs").glob(f"slurm-{job['job']}_*.out"))) == 4
    shown = dwm("status", str(out)).stdout
    assert f"slurm job {job['job']}: 4 COMPLETED" in shown and "finished" in shown, shown


def _element_running(out: Path, element: str, units_done: int) -> bool:
    """Whether `element` runs and its task has closed `units_done` units' shards."""
    folder = RunFolder(out)
    task = JobBook(folder).elements().get(element)
    if task is None or (queued() or {}).get(element) != "RUNNING":
        return False
    return len(list(folder.manifests.glob(f"*-{task:05d}-*.json"))) >= units_done


def test_a_cancelled_and_a_timed_out_element_are_resubmitted(slurm, tmp_path, monkeypatch):
    """Element 0 gets a one-minute limit (Slurm's smallest) while its 112 s task runs, element 1
    is scancelled after its first unit; both tasks are resubmitted and finish."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the submitter's; no GPU asked, none seen
    out = tmp_path / "run"
    seen: dict[str, str] = {}

    def disturb() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            job = _first_job(out)
            if _element_running(out, f"{job}_0", 0) and _element_running(out, f"{job}_1", 1):
                break
            time.sleep(0.5)
        slurm.run("scontrol", "update", f"JobId={job}_0", "TimeLimit=1")
        slurm.run("scancel", f"{job}_1")
        seen["job"] = job

    watcher = threading.Thread(target=disturb, daemon=True)
    watcher.start()
    started = time.time()
    result = build(
        "cluster_sources:DeviceBuilder",
        {"units": 14, "delay": 16.0},
        recipe("run.tasks=2"),
        out,
        progress=False,
    )
    watcher.join(timeout=5)
    print(
        f"14 units of 16 s on 2 elements, one cancelled, one timed out: {time.time() - started:.1f} s"
    )
    assert result.ok, result.status.failures
    job = seen["job"]
    states = finished_states([j["job"] for j in JobBook(RunFolder(out)).jobs()])
    assert states[f"{job}_0"] == "TIMEOUT" and states[f"{job}_1"] == "CANCELLED", states
    jobs = JobBook(RunFolder(out)).jobs()
    assert sorted(t for j in jobs[1:] for t in j["tasks"]) == [0, 1]  # resubmitted, once each
    assert all(states[f"{j['job']}_0"] == "COMPLETED" for j in jobs[1:])
    assert_every_sample_once(out, 14)
    assert set(_devices_seen(out)) == {""}


def _first_job(out: Path) -> str:
    jobs = JobBook(RunFolder(out)).jobs() if (out / "slurm" / "jobs.jsonl").exists() else []
    return jobs[0]["job"] if jobs else "none"


def _devices_seen(out: Path) -> list[str]:
    logs = "".join(p.read_text() for p in (out / "logs").glob("0*.log"))
    return [eval(v) for v in re.findall(r"sees CUDA_VISIBLE_DEVICES=('[^']*'|None)", logs)]


def test_more_tasks_than_max_array_size_go_in_chunks_each_element_on_its_gpu(tmp_path):
    """10 tasks on a cluster taking arrays of 8: two arrays. Each element asks for one GPU and
    its workers see only the one Slurm gave it; a hanging unit times out inside its element."""
    out = tmp_path / "run"
    started = time.time()
    result = build(
        "cluster_sources:DeviceBuilder",
        {"units": 10, "hang": [4]},
        recipe("run.tasks=10", "run.slurm.gpus=1", "run.unit_timeout=3", "run.workers=4"),
        out,
        progress=False,
    )
    print(f"10 tasks in arrays of {slurm_cluster.MAX_ARRAY_SIZE}: {time.time() - started:.1f} s")
    jobs = JobBook(RunFolder(out)).jobs()
    assert [len(j["tasks"]) for j in jobs] == [8, 2]
    assert sorted(t for j in jobs for t in j["tasks"]) == list(range(10))
    status = result.status
    assert status.finished and status.samples == 9
    (failure,) = status.failures
    assert failure["unit"] == "unit004" and failure["stage"] == "timeout"
    assert len(list((out / "logs").glob("slurm-*.out"))) == 10
    seen = _devices_seen(out)
    assert len(seen) >= 10 and set(seen) <= {"0", "1"} and set(seen) == {"0", "1"}, seen
