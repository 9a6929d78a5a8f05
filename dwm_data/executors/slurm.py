"""The Slurm backend: array jobs whose elements each run one task of the plan.

The array script calls `dwm-data run-task OUT --task N`, which needs nothing but the run folder
(the live run settings are in `run.json`) and supervises its task's workers as the local driver
does, so a requeued or preempted element resumes exactly where its task stopped and a lost
allocation costs no unit anything. The driver submits (in arrays of at most the cluster's
`MaxArraySize` elements), follows the elements with `squeue`, and resubmits the task of every
element that left the queue without completing it (cancelled, timed out, out of memory, node
down), up to `run.restarts` times per task. Every submission is recorded in
`slurm/jobs.jsonl`, so `dwm-data status` shows the jobs and a re-run while they are queued
attaches to them instead of submitting twice. Stopping the driver cancels the jobs; Slurm's
SIGTERM makes each element close what is complete.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from dwm_data.errors import DwmDataError
from dwm_data.executors.base import Executor, Poll
from dwm_data.recipe import RunConfig
from dwm_data.runs import records
from dwm_data.runs.folder import RunFolder

JOB_NAME = "dwm-data"
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default, for a script written without a cluster


def array_script(root: Path, tasks: list[int], config: RunConfig, retry_failed: bool) -> str:
    """The sbatch script for `tasks`; element i runs task tasks[i]."""
    slurm = config.slurm
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={JOB_NAME}",
        f"#SBATCH --array=0-{len(tasks) - 1}%{max(1, config.workers)}",
        f"#SBATCH --cpus-per-task={slurm.cpus_per_task}",
        f"#SBATCH --mem={slurm.mem}",
        f"#SBATCH --time={slurm.time}",
        f"#SBATCH --output={root}/logs/slurm-%A_%a.out",
        "#SBATCH --requeue",
    ]
    if slurm.partition:
        lines.append(f"#SBATCH --partition={slurm.partition}")
    if slurm.gpus:
        lines.append(f"#SBATCH --gres=gpu:{slurm.gpus}")
    lines += [f"#SBATCH {line}" for line in slurm.extra]
    retry = " --retry-failed" if retry_failed else ""
    lines.append("set -euo pipefail")
    if not slurm.gpus:  # Slurm sets it for the GPUs it allocates; none asked, none seen
        lines.append("export CUDA_VISIBLE_DEVICES=")
    lines += [
        f"TASKS=({' '.join(str(t) for t in tasks)})",
        f'exec {sys.executable} -m cli.main run-task {root} --task "${{TASKS[$SLURM_ARRAY_TASK_ID]}}"{retry}',
    ]
    return "\n".join(lines) + "\n"


def max_array_size() -> int:
    """The cluster's MaxArraySize: an array may have indices 0 .. MaxArraySize - 1."""
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", shown.stdout, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


def chunks(tasks: list[int], size: int) -> list[list[int]]:
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


class JobBook:
    """`slurm/jobs.jsonl`: every array submitted for this run, with the task of each element."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.path = folder.root / "slurm" / "jobs.jsonl"

    def record(self, job: str, tasks: list[int], script: Path) -> None:
        self.path.parent.mkdir(exist_ok=True)
        entry = {"job": job, "tasks": tasks, "script": script.name, "time": time.time()}
        records.append_line(self.path, entry)

    def jobs(self) -> list[dict]:
        return records.read_lines(self.path)

    def elements(self) -> dict[str, int]:
        """Every element ever submitted ("JOB_INDEX") -> its task."""
        return {f"{j['job']}_{i}": t for j in self.jobs() for i, t in enumerate(j["tasks"])}


def queued() -> dict[str, str] | None:
    """Our elements in Slurm's queue (pending, running, completing, requeued) -> their state;
    None when squeue could not answer, which must never read as "all gone"."""
    shown = subprocess.run(
        ["squeue", "--me", "-h", "-r", "-n", JOB_NAME, "-o", "%i %T"],
        capture_output=True,
        text=True,
    )
    if shown.returncode != 0:
        return None
    return dict(line.split(maxsplit=1) for line in shown.stdout.splitlines() if line.strip())


def finished_states(jobs: list[str]) -> dict[str, str]:
    """Final states of elements that left the queue: from sacct, else (no accounting database)
    from slurmctld's memory of recent jobs (`scontrol show job`, kept MinJobAge seconds)."""
    if not jobs:
        return {}
    acct = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,State"],
        capture_output=True,
        text=True,
    )
    if acct.returncode == 0 and acct.stdout.strip():
        rows = (line.split("|") for line in acct.stdout.splitlines() if "|" in line)
        return {job: state.split()[0] for job, state in rows}
    states = {}
    for job in jobs:
        shown = subprocess.run(
            ["scontrol", "-o", "show", "job", job], capture_output=True, text=True
        ).stdout
        for found in re.finditer(r"ArrayJobId=(\d+) ArrayTaskId=(\d+) .*?JobState=(\S+)", shown):
            states[f"{found.group(1)}_{found.group(2)}"] = found.group(3)
    return states


def job_summaries(folder: RunFolder) -> list[str]:
    """One line per recorded job: its elements' states, with the task of those not completed."""
    jobs = JobBook(folder).jobs()
    if not jobs or shutil.which("squeue") is None:
        return [f"slurm job {j['job']}: tasks {_ranges(j['tasks'])}" for j in jobs]
    states = {**finished_states([j["job"] for j in jobs]), **(queued() or {})}
    lines = []
    for entry in jobs:
        counts: Counter[str] = Counter()
        notes = []
        for index, task in enumerate(entry["tasks"]):
            state = states.get(f"{entry['job']}_{index}", "UNKNOWN")
            counts[state] += 1
            if state != "COMPLETED":
                notes.append(f"task {task} {state}")
        summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
        detail = f" ({'; '.join(notes[:8])}{' ...' if len(notes) > 8 else ''})" if notes else ""
        lines.append(f"slurm job {entry['job']}: {summary}{detail}")
    return lines


def queued_jobs(folder: RunFolder) -> list[str]:
    """The run's recorded jobs that still have elements in the queue."""
    live = (queued() or {}) if shutil.which("squeue") else {}
    jobs = {element.split("_")[0] for element in live}
    return [j["job"] for j in JobBook(folder).jobs() if j["job"] in jobs]


def _ranges(tasks: list[int]) -> str:
    return f"{tasks[0]}-{tasks[-1]}" if len(tasks) > 1 else str(tasks[0])


class SlurmExecutor(Executor):
    def run(
        self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll, stop: threading.Event
    ) -> None:
        folder = RunFolder(root)
        book = JobBook(folder)
        if shutil.which("sbatch") is None:
            scripts = [
                s for s, _ in self._write(folder, tasks, retry_failed, DEFAULT_MAX_ARRAY_SIZE)
            ]
            listed = " ".join(str(s) for s in scripts)
            raise DwmDataError(
                f"sbatch not found on this machine; the array job is written to {listed}: "
                f"submit it with `sbatch {scripts[0]}` on the cluster and follow it with "
                f"`dwm-data status {folder.root}`"
            )
        elements = self._attach(book, tasks)
        fresh = [t for t in tasks if t not in elements.values()]
        if fresh:
            elements |= self._submit(folder, book, fresh, retry_failed)
        if self.config.detach:
            return
        lost: Counter[int] = Counter()
        while elements and not stop.is_set():
            poll(set(elements.values()))
            if stop.wait(self.config.slurm.poll_seconds):
                break
            in_queue = queued()
            if in_queue is None:
                continue  # squeue did not answer this time
            gone = {e: t for e, t in elements.items() if e not in in_queue}
            for element in gone:
                del elements[element]
            again = []
            for task in sorted(set(gone.values()) - set(elements.values())):
                if folder.task_file("completions", task).exists():
                    continue
                lost[task] += 1  # the element ended without finishing: no unit pays
                if lost[task] <= self.config.restarts:
                    again.append(task)
            if again:
                elements |= self._submit(folder, book, again, False)
        if stop.is_set() and elements:
            jobs = sorted({e.split("_")[0] for e in elements})
            subprocess.run(["scancel", *jobs], check=False)
        poll(set())

    def _attach(self, book: JobBook, tasks: list[int]) -> dict[str, int]:
        """Elements of this run already in the queue (a detached or killed driver's)."""
        in_queue = queued()
        if in_queue is None:
            raise DwmDataError("squeue did not answer; cannot tell whether this run is queued")
        wanted = set(tasks)
        return {e: t for e, t in book.elements().items() if e in in_queue and t in wanted}

    def _write(
        self, folder: RunFolder, tasks: list[int], retry_failed: bool, size: int
    ) -> list[tuple[Path, list[int]]]:
        """One script per array of at most `size` tasks, numbered after those already written."""
        (folder.root / "slurm").mkdir(exist_ok=True)
        written = len(list((folder.root / "slurm").glob("array-*.sbatch")))
        scripts = []
        for offset, chunk in enumerate(chunks(tasks, size)):
            script = folder.root / "slurm" / f"array-{written + offset}.sbatch"
            script.write_text(array_script(folder.root, chunk, self.config, retry_failed))
            scripts.append((script, chunk))
        return scripts

    def _submit(
        self, folder: RunFolder, book: JobBook, tasks: list[int], retry_failed: bool
    ) -> dict[str, int]:
        """sbatch `tasks` in arrays the cluster accepts; their elements -> tasks."""
        elements = {}
        for script, chunk in self._write(folder, tasks, retry_failed, max_array_size()):
            done = subprocess.run(
                ["sbatch", "--parsable", str(script)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise DwmDataError(f"sbatch {script} failed: {done.stderr.strip()}")
            job = done.stdout.strip().split(";")[0]
            book.record(job, chunk, script)
            elements |= {f"{job}_{i}": t for i, t in enumerate(chunk)}
        return elements
