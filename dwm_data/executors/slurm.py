"""The Slurm backend: one array job whose elements each run one task of the plan.

The array script calls `dwm-data run-task OUT --task N`, which needs nothing but the run folder
(the live run settings are in `run.json`) and supervises its task's workers as the local driver
does, so a requeued or preempted element resumes exactly where its task stopped and a lost
allocation costs no unit anything. The driver submits, polls the run folder (and squeue), and
resubmits tasks left unfinished by lost elements, up to `run.restarts` rounds. Stopping the driver
cancels the job; Slurm's SIGTERM makes each element close what is complete.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

from dwm_data.errors import DwmDataError
from dwm_data.executors.base import Executor, Poll
from dwm_data.recipe import RunConfig
from dwm_data.runs.folder import RunFolder


def array_script(root: Path, tasks: list[int], config: RunConfig, retry_failed: bool) -> str:
    """The sbatch script for `tasks`; element i runs task tasks[i]."""
    slurm = config.slurm
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=dwm-data",
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
    lines += [
        "set -euo pipefail",
        f"TASKS=({' '.join(str(t) for t in tasks)})",
        f'exec {sys.executable} -m cli.main run-task {root} --task "${{TASKS[$SLURM_ARRAY_TASK_ID]}}"{retry}',
    ]
    return "\n".join(lines) + "\n"


class SlurmExecutor(Executor):
    def run(
        self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll, stop: threading.Event
    ) -> None:
        folder = RunFolder(root)
        pending = list(tasks)
        for round_ in range(self.config.restarts + 1):
            script = folder.root / "slurm" / f"array-{round_}.sbatch"
            script.parent.mkdir(exist_ok=True)
            script.write_text(
                array_script(folder.root, pending, self.config, retry_failed and round_ == 0)
            )
            if shutil.which("sbatch") is None:
                raise DwmDataError(
                    f"sbatch not found on this machine; the array job is written to {script}: "
                    f"submit it with `sbatch {script}` on the cluster and follow it with "
                    f"`dwm-data status {folder.root}`"
                )
            job = (
                subprocess.run(
                    ["sbatch", "--parsable", str(script)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .split(";")[0]
            )
            while self._queued(job):
                poll(set(pending))
                if stop.wait(self.config.slurm.poll_seconds):
                    subprocess.run(["scancel", job], check=False)
                    return
            pending = [t for t in pending if not folder.task_file("completions", t).exists()]
            if not pending:
                break
        poll(set())

    @staticmethod
    def _queued(job: str) -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        return bool(out.stdout.strip())
