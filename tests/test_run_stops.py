"""`build-taste` on real clips, stopped every way a run is stopped in the field: SIGKILL of the
whole run at random moments, Ctrl-C, SIGTERM, then resumed on other resources.

The 12 units are the real clips of ../shared/data (the fixed-camera clip and the dynamic ones,
each linked several times); their hands come from `<clip>.hands.npz` files, the file-fed
landmarks the demo uses, so the run costs decoding and encoding, not hand estimation.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from dwm_data.hands.track import HandTrack
from dwm_data.runs.status import run_status
from dwm_data.store import read_samples
from dwm_data.video import probe

PROJECT = Path(__file__).resolve().parents[1]
UNITS = 12
# Small shards so a kill finds closed ones to keep; hand files need no detector-sized frames.
SETTINGS = ["shards.maxcount=2", "taste.detect_height=48"]


def real_clips_folder(root: Path, units: int = UNITS) -> Path:
    """A folder of clips (links to the real ones), each with a prompt and a hands file."""
    real = [
        shared_path("dwm_realworld/realworld_fixed/pour_coke.mp4"),
        *sorted(shared_path("dwm_realworld/realworld_dynamic/videos").glob("*.mp4")),
    ]
    root.mkdir(parents=True)
    for index in range(units):
        clip = real[index % len(real)]
        stem = root / f"clip{index:02d}"
        stem.with_suffix(".mp4").symlink_to(clip)
        stem.with_suffix(".txt").write_text(f"real clip {index}")
        info = probe(clip)
        track = HandTrack.empty(info.frames)
        centre = np.array([info.width / 2, info.height / 2])
        pixels = centre + np.random.default_rng(index).normal(0, 40, (21, 2))
        track.valid[:, 1] = True
        track.scores[:, 1] = 1.0
        track.keypoints_px[:, 1] = pixels
        track.keypoints_cam[:, 1] = np.c_[(pixels - centre) / 1000, np.full(21, 0.5)]
        stem.with_suffix(".hands.npz").write_bytes(track.to_npz())
    return root


def start(source: Path, out: Path, *flags: str) -> subprocess.Popen:
    """`dwm-data build-taste` in its own session, as a terminal or a batch system starts it;
    its output goes to a file (a pipe nobody reads would block its workers)."""
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    command = [sys.executable, "-m", "cli.main", "build-taste", str(source), str(out)]
    command += ["--hands-files", "--recipe", "tiny", "--quiet", *sets, *flags]
    log = out.with_name(out.name + ".out")
    with open(log, "w") as handle:
        driver = subprocess.Popen(
            command, cwd=PROJECT, start_new_session=True, stdout=handle, stderr=subprocess.STDOUT
        )
    driver.log = log  # type: ignore[attr-defined]
    return driver


def finish(driver: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    driver.wait(timeout=timeout)
    return driver.returncode, driver.log.read_text()  # type: ignore[attr-defined]


def running(out: Path) -> list[dict]:
    """The records of the running files (a worker may be replacing one as it is read)."""
    records = []
    for path in (out / "running").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            records.append(json.loads(path.read_text()))
    return records


def in_flight_since(out: Path, moment: float) -> bool:
    """Whether a worker started after `moment` is processing a unit."""
    return any(record["since"] > moment for record in running(out))


def processed(out: Path) -> Counter[str]:
    """How often each unit was processed to the end, from the task logs."""
    return Counter(
        match
        for log in (out / "logs").glob("*.log")
        for match in re.findall(r"unit (\S+): \d+ samples in", log.read_text())
    )


def wait_for(predicate, timeout: float = 120.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def assert_complete(out: Path) -> None:
    """Every sample exactly once, no unit failed, every tar complete, no temporary files."""
    keys = Counter(s.key for s in read_samples(out))
    assert len(keys) == UNITS and set(keys.values()) == {1}
    for tar in (out / "shards").glob("*.tar"):
        with tarfile.open(tar) as handle:
            handle.getmembers()  # a truncated tar raises here
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    status = run_status(out)
    assert status.failed == 0 and status.done == UNITS and status.state == "finished"
    assert json.loads((out / "dataset.json").read_text())["totals"]["samples"] == UNITS


def last_units(out: Path) -> set[str]:
    """The unit each task ends with, from the frozen plan."""
    plan = json.loads((out / "plan.json").read_text())
    return {units[-1]["id"] for units in plan["tasks"]}


def ends_a_task(out: Path, last: set[str]) -> bool:
    """Whether a worker is on its task's last unit, the only one whose end closes a shard here."""
    return any(record["unit"] in last for record in running(out))


@pytest.mark.slow
def test_twenty_sigkills_of_the_whole_run_condemn_no_unit(tmp_path):
    source = real_clips_folder(tmp_path / "clips")
    out = tmp_path / "run"
    # Shards larger than a task, so no work is kept until a task ends; each kill lands at a
    # random point while units are in flight, and at the latest when a task reaches its last
    # unit (polled far faster than a unit runs), so the run cannot finish between kills.
    flags = ["--workers", "2", "--set", "shards.maxcount=100"]
    delays = random.Random(18).sample([x / 100 for x in range(0, 80)], 20)
    for delay in delays:
        started = time.time()
        driver = start(source, out, *flags)
        assert wait_for(lambda s=started: in_flight_since(out, s)), finish(driver)
        last = last_units(out)
        deadline = time.time() + delay
        while time.time() < deadline and not ends_a_task(out, last):
            time.sleep(0.002)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver; its workers die with it
        driver.wait()
        assert not list((out / "manifests").glob("*.json")), "a task ended between kills"
    assert wait_for(lambda: run_status(out).state == "stopped", 20)  # no orphan runs on
    status = run_status(out)
    assert status.failed == 0 and not status.running
    code, output = finish(start(source, out, *flags))
    logs = [log.read_text() for log in (out / "logs").glob("*.log")]
    forgiven = sum(log.count("the run stopped while it was in flight") for log in logs)
    # far more deaths in flight than a unit is allowed (run.restarts: 3), and none charged
    assert forgiven >= 20, forgiven
    assert code == 0, output
    assert_complete(out)
    assert not list((out / "deaths").glob("*.jsonl"))  # no living supervisor saw a death


STOPS = {
    # Ctrl-C: the terminal signals the foreground process group; resumed on more workers
    "ctrl-c": (signal.SIGINT, True, ["--workers", "1"], ["--workers", "2"]),
    # `kill PID` or a batch system's SIGTERM to the driver of a Ray run; resumed locally
    "sigterm-ray": (signal.SIGTERM, False, ["--workers", "2", "--executor", "ray"], []),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(STOPS))
def test_a_stopped_run_keeps_what_is_complete_and_resumes_elsewhere(tmp_path, how):
    """Stopped mid-run: exit 3, every finished unit kept, `status` says stopped; the resume, on
    another worker count or executor, redoes none of them."""
    sig, to_group, first, resume = STOPS[how]
    if "ray" in first:
        pytest.importorskip("ray")
    source = real_clips_folder(tmp_path / "clips")
    out = tmp_path / "run"
    driver = start(source, out, *first)
    assert wait_for(lambda: sum(processed(out).values()) >= 3)
    (os.killpg if to_group else os.kill)(driver.pid, sig)
    code, output = finish(driver, timeout=90)
    assert code == 3, output
    assert "stopped" in output and "re-run the same command" in output.lower()
    kept = processed(out)
    status = run_status(out)
    assert status.done == sum(kept.values()) >= 3 and status.failed == 0
    assert status.state == "stopped" and not list((out / "running").glob("*.json"))
    shown = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    ).stdout
    assert f"{status.done} done" in shown and "stopped" in shown and "running for" not in shown
    code, output = finish(start(source, out, *resume))
    assert code == 0, output
    assert_complete(out)
    assert set(processed(out).values()) == {1} and len(processed(out)) == UNITS


@pytest.mark.slow
def test_the_advice_a_failure_prints_works_on_the_same_run_folder(tmp_path):
    source = real_clips_folder(tmp_path / "clips", units=3)
    (source / "clip01.txt").unlink()
    out = tmp_path / "run"
    code, output = finish(start(source, out))
    assert code == 1 and "clip01 [prompt]" in output and "--allow-missing-caption" in output
    code, output = finish(start(source, out, "--allow-missing-caption"))
    assert code == 0, output
    prompts = {s.key: s.prompt for s in read_samples(out)}
    assert prompts == {
        "clip-clip00": "real clip 0",
        "clip-clip01": "",
        "clip-clip02": "real clip 2",
    }
