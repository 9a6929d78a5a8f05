"""The run machinery under the failures the field meets: kills, hangs, crashes, re-runs."""

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from dwm_data.build import build
from dwm_data.errors import DwmDataError
from dwm_data.recipe import load_recipe
from dwm_data.runs.folder import RunFolder
from dwm_data.runs.plan import make_plan, prepare
from dwm_data.runs.records import clear_running, heartbeat, write_running
from dwm_data.runs.status import run_status
from dwm_data.store import read_samples

TESTS = Path(__file__).parent
BUILDER = "sources:SyntheticBuilder"


@pytest.fixture(autouse=True)
def _sources_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def recipe(*overrides):
    return load_recipe("tiny", ["shards.maxcount=2", "run.workers=2", *overrides])


def assert_complete(out: Path, units: int, clips: int = 1) -> None:
    """Every sample exactly once, every tar complete, no temporary files, dataset.json valid."""
    keys = Counter(s.key for s in read_samples(out))
    assert len(keys) == units * clips and set(keys.values()) == {1}
    for tar in (out / "shards").glob("*.tar"):
        with tarfile.open(tar) as handle:
            handle.getmembers()  # a truncated tar raises here
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["totals"]["samples"] == units * clips
    assert sorted(dataset["shards"]) == sorted(p.name for p in (out / "shards").glob("*.tar"))


def test_plan_is_split_into_tasks_and_stats_are_written(tmp_path):
    result = build(BUILDER, {"units": 5}, recipe("run.tasks=2"), tmp_path / "run", progress=False)
    assert result.ok and result.status.tasks == 2
    stats = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "stats").glob("*.json"))]
    assert [s["units"] for s in stats] == [3, 2] or [s["units"] for s in stats] == [2, 3]
    assert sum(s["samples"] for s in stats) == 5
    assert len(list((tmp_path / "run" / "completions").iterdir())) == 2
    assert (tmp_path / "run" / "logs" / "00000.log").read_text().count("samples in") >= 2
    assert_complete(tmp_path / "run", 5)


def test_rerun_skips_finished_work(tmp_path):
    build(BUILDER, {"units": 4}, recipe(), tmp_path / "run", progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "shards").glob("*.tar")}
    again = build(BUILDER, {"units": 4}, recipe(), tmp_path / "run", progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "shards").glob("*.tar")}
    assert again.ok and before == after


def test_a_different_command_on_the_same_folder_is_refused(tmp_path):
    build(BUILDER, {"units": 2}, recipe(), tmp_path / "run", progress=False)
    with pytest.raises(DwmDataError, match="holds a different run"):
        build(BUILDER, {"units": 3}, recipe(), tmp_path / "run", progress=False)
    assert build(
        BUILDER, {"units": 3}, recipe(), tmp_path / "run", overwrite=True, progress=False
    ).ok


def test_sections_the_run_does_not_read_may_change_between_invocations(tmp_path):
    """One recipe file for a project: its training settings and another source's knobs are
    not this run's identity; its video settings are."""
    out = tmp_path / "run"
    assert build(BUILDER, {"units": 2}, recipe(), out, progress=False).ok
    edited = recipe("train.learning_rate=0.5", "sample.steps=3", "ego.work_width=100")
    assert build(BUILDER, {"units": 2}, edited, out, progress=False).ok
    with pytest.raises(DwmDataError, match="differs in recipe video"):
        build(BUILDER, {"units": 2}, recipe("video.frames=5"), out, progress=False)


def test_other_run_settings_resume_the_same_run(tmp_path, caplog):
    """Workers, tasks, executor and timeouts are how a run is run, not which run it is."""
    first = build(BUILDER, {"units": 5}, recipe("run.workers=1"), tmp_path / "run", progress=False)
    caplog.set_level(logging.WARNING, logger="dwm_data.runs.plan")
    again = build(
        BUILDER,
        {"units": 5},
        recipe("run.workers=3", "run.tasks=5", "run.unit_timeout=99"),
        tmp_path / "run",
        progress=False,
    )
    assert again.ok and again.status.tasks == first.status.tasks  # the frozen split is kept
    told = [
        r.getMessage() for r in caplog.records if "run.tasks 5 is not applied" in r.getMessage()
    ]
    assert len(told) == 1 and f"split into {first.status.tasks} tasks" in told[0]
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["workers"] == 3 and settings["unit_timeout"] == 99


def test_a_foreign_folder_is_never_written_nor_deleted(tmp_path):
    thesis = tmp_path / "mine" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(DwmDataError, match="not a dwm-data run folder"):
            build(BUILDER, {"units": 1}, recipe(), thesis.parent, overwrite=overwrite)
    assert thesis.read_text() == "years of work" and os.listdir(thesis.parent) == ["thesis.tex"]


def test_overwrite_replaces_our_own_run_folder(tmp_path):
    build(BUILDER, {"units": 2}, recipe(), tmp_path / "run", progress=False)
    (tmp_path / "run" / "plan.json").unlink()  # even cut short before the plan, it is ours
    assert build(
        BUILDER, {"units": 3}, recipe(), tmp_path / "run", overwrite=True, progress=False
    ).ok


def test_status_tells_a_dead_run_from_a_live_one(tmp_path):
    folder = RunFolder(tmp_path / "run")
    prepare(folder, make_plan(BUILDER, {"units": 2}, recipe("run.tasks=1")))
    write_running(folder, 0, "unit000", open_units=0)  # as a worker does: this process
    (live,) = run_status(folder.root).running
    assert live["unit"] == "unit000" and live["pid"] == os.getpid()
    assert run_status(folder.root).state == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = json.loads(folder.task_file("running", 0).read_text()) | {"pid": dead.pid}
    folder.task_file("running", 0).write_text(json.dumps(record))
    assert run_status(folder.root).running == [] and run_status(folder.root).state == "stopped"
    stale = time.time() - 60  # a worker on another machine whose supervisor stopped beating
    folder.task_file("running", 0).write_text(json.dumps(record | {"host": "elsewhere"}))
    os.utime(folder.task_file("running", 0), (stale, stale))
    assert run_status(folder.root).state == "stopped"
    heartbeat(folder, 0)
    assert run_status(folder.root).state == "running"
    clear_running(folder, 0)
    assert run_status(folder.root).state == "stopped"
    with folder.lock():  # a driver between units: nothing in flight, still running
        assert run_status(folder.root).state == "running"


def test_only_one_driver_per_run_folder(tmp_path):
    import fcntl

    build(BUILDER, {"units": 1}, recipe(), tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "run.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(DwmDataError, match="another dwm-data process"):
            build(BUILDER, {"units": 1}, recipe(), tmp_path / "run", progress=False)
        with pytest.raises(DwmDataError, match="another dwm-data process"):  # nor deleted
            build(BUILDER, {"units": 1}, recipe(), tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "dataset.json").exists()


def test_bad_unit_fails_alone_and_retry_failed_retries_it(tmp_path):
    result = build(BUILDER, {"units": 4, "bad": [2]}, recipe(), tmp_path / "run", progress=False)
    assert result.status.failed == 1 and result.status.samples == 3 and not result.ok
    failure = result.status.failures[0]
    assert (failure["unit"], failure["stage"], failure["message"]) == (
        "unit002",
        "input",
        "unit 2 is bad on purpose",
    )
    assert not (tmp_path / "run" / "dataset.json").exists() or result.status.finished
    retried = build(
        BUILDER,
        {"units": 4, "bad": [2]},
        recipe(),
        tmp_path / "run",
        retry_failed=True,
        progress=False,
    )
    assert (
        retried.status.failed == 1 and retried.status.samples == 3
    )  # still bad, still counted once


def test_a_loose_option_resumes_the_same_run_and_retries_its_failures(tmp_path):
    """The advice a failure prints works on the same folder: an option that only changes how
    failed units are treated (here `lenient`) is no other run."""
    strict = build(BUILDER, {"units": 3, "bad": [1]}, recipe(), tmp_path / "run", progress=False)
    assert strict.status.failed == 1
    options = {"units": 3, "bad": [1], "lenient": True}
    lenient = build(BUILDER, options, recipe(), tmp_path / "run", progress=False)
    assert lenient.ok and lenient.status.samples == 3
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["options"]["lenient"]


def test_units_without_samples_are_done_not_redone(tmp_path):
    result = build(
        BUILDER,
        {"units": 4, "empty": [0, 3]},
        recipe("run.tasks=1"),
        tmp_path / "run",
        progress=False,
    )
    assert result.ok and result.status.done == 4 and result.status.samples == 2
    log = (tmp_path / "run" / "logs" / "00000.log").read_text()
    assert log.count("unit000: 0 samples") == 1
    again = build(
        BUILDER,
        {"units": 4, "empty": [0, 3]},
        recipe("run.tasks=1"),
        tmp_path / "run",
        progress=False,
    )
    assert again.ok and again.status.done == 4


@pytest.mark.slow
def test_a_hanging_unit_times_out_and_the_rest_finishes(tmp_path):
    result = build(
        BUILDER,
        {"units": 4, "hang": [1]},
        recipe("run.unit_timeout=2", "run.tasks=1"),
        tmp_path / "run",
        progress=False,
    )
    assert result.status.samples == 3 and result.status.finished
    (failure,) = result.status.failures
    assert failure["unit"] == "unit001" and failure["stage"] == "timeout"


@pytest.mark.slow
def test_a_unit_that_kills_its_worker_is_recorded_after_the_restarts(tmp_path):
    result = build(
        BUILDER,
        {"units": 4, "crash": [2]},
        recipe("run.restarts=2", "run.tasks=1"),
        tmp_path / "run",
        progress=False,
    )
    assert result.status.samples == 3 and result.status.finished
    (failure,) = result.status.failures
    assert (
        failure["unit"] == "unit002"
        and failure["stage"] == "crash"
        and "died 2 times while processing this unit (last: killed by SIGKILL)"
        in failure["message"]
    )
    deaths = (tmp_path / "run" / "deaths" / "00000.jsonl").read_text().splitlines()
    assert [json.loads(line)["unit"] for line in deaths] == ["unit002", "unit002"]


def test_workers_are_recycled_without_losing_samples(tmp_path):
    result = build(
        BUILDER,
        {"units": 5},
        recipe("run.units_per_process=2", "run.tasks=1", "shards.maxcount=10"),
        tmp_path / "run",
        progress=False,
    )
    assert result.ok
    assert (
        len(list((tmp_path / "run" / "shards").glob("*.tar"))) == 3
    )  # each process closes its shard
    assert_complete(tmp_path / "run", 5)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from dwm_data.build import build
from dwm_data.recipe import load_recipe
recipe = load_recipe("tiny", ["shards.maxcount=2", "run.workers=2", "run.tasks=2"])
build({builder!r}, {{"units": 12, "clips_per_unit": 2, "delay": 0.25}}, recipe, Path({out!r}), progress=False)
"""


def start_driver(out: Path) -> subprocess.Popen:
    code = DRIVER.format(tests=str(TESTS), builder=BUILDER, out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_sigkill_at_several_moments_then_rerun_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "run"
    shards = out / "shards"

    def manifests():
        return len(list((out / "manifests").glob("*.json"))) if (out / "manifests").exists() else 0

    moments = {
        "mid-shard": lambda: (
            shards.exists() and any(p.stat().st_size > 0 for p in shards.glob("*.tar.tmp"))
        ),
        "between shards": lambda: manifests() >= 3,
        "late in the run": lambda: manifests() >= 8,
    }
    for name, moment in moments.items():
        driver = start_driver(out)
        assert wait_for(moment), f"never reached {name}"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver; its workers die with it
        driver.wait()
        time.sleep(0.3)
        assert not (out / "dataset.json").exists(), name
    status = run_status(out)
    assert status.failed == 0 and 0 < status.done < 24
    # a kill during the final write leaves a half-written dataset.json.tmp and no dataset.json
    (out / "dataset.json.tmp").write_text('{"schema_vers')
    driver = start_driver(out)
    assert driver.wait(timeout=120) == 0
    assert_complete(out, 12, clips=2)
    assert run_status(out).failed == 0
