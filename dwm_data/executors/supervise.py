"""A living supervisor for one task: it runs attempt after attempt in fresh worker processes and
is the only one who may charge a worker's death to the unit in flight.

Every backend supervises this way: the local driver for each of its tasks, and on Ray and Slurm
a wrapper around each task (so a lost node or a cancelled allocation, which takes its wrapper
along, costs no unit anything). A process per attempt (spawned, not forked, so bpy/torch state
never leaks in) gives worker recycling for free: `run_task` stops after `units_per_process` units
and the task is started again. Timeouts are read from `running/<task>.json`; the worker's whole
process group (Blender or ffmpeg children included) is killed and the task restarts past it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

from dwm_data.output import output_to
from dwm_data.recipe import RunConfig
from dwm_data.runs import records
from dwm_data.runs.folder import RunFolder
from dwm_data.runs.task import STOP, run_task

PR_SET_PDEATHSIG = 1
STOP_GRACE = 30.0  # seconds a stopped worker gets to close its shard before it is killed


def _die_with_parent() -> None:
    """Linux: a SIGKILLed supervisor takes its workers along, so a re-run never races orphans."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker_main(root: str, task: int, retry_failed: bool, max_units: int) -> None:
    os.setpgrp()  # own process group: a timeout kill takes the worker's children, Ctrl-C does not
    _die_with_parent()
    STOP.install()
    with output_to(RunFolder(root).task_file("logs", task)):  # C-level prints of libraries
        run_task(root, task, retry_failed=retry_failed, max_units=max_units)


def _cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


class TaskSupervisor:
    """One task's attempts; `step` advances it and says whether it still needs a worker."""

    def __init__(self, root: Path, task: int, config: RunConfig, retry_failed: bool):
        self.folder, self.task, self.config = RunFolder(root), task, config
        self.retry_failed = retry_failed  # for the first attempt only
        self.deaths = 0
        self.process: mp.Process | None = None

    def start(self) -> None:
        context = mp.get_context("spawn")
        args = (str(self.folder.root), self.task, self.retry_failed, self.config.units_per_process)
        self.process = context.Process(target=_worker_main, args=args, name=f"dwm-task-{self.task}")
        self.retry_failed = False
        self.process.start()

    def step(self) -> bool:
        process = self.process
        assert process is not None
        if process.is_alive():
            records.heartbeat(self.folder, self.task)
            if self._overdue():
                _kill(process)
                records.clear_running(self.folder, self.task)  # whoever started since: free redo
                self.start()
            return True
        process.join()
        if self.folder.task_file("completions", self.task).exists():
            return False
        if process.exitcode != 0:
            records.charge_death(
                self.folder, self.task, self.config.restarts, _cause(process.exitcode)
            )
            self.deaths += 1
            if self.gives_up():
                return False
        self.start()
        return True

    def gives_up(self) -> bool:
        """Whether a task whose worker keeps dying is left unfinished for now.

        Deaths in a unit are charged to it, so this cap only stops a task that dies outside any
        unit (e.g. in setup) from looping; `status` shows it, a re-run resumes it.
        """
        return self.deaths > self.config.restarts * 2 + 2

    def _overdue(self) -> bool:
        """If the unit in flight is past the timeout, record it as timed out."""
        current = records.read_running(self.folder, self.task)
        timeout = self.config.unit_timeout
        if not current or time.time() - current["since"] <= timeout:
            return False
        records.record_failure(
            self.folder,
            self.task,
            current["unit"],
            "timeout",
            "Timeout",
            f"unit took longer than the {timeout:g} s timeout (run.unit_timeout)",
        )
        return True

    def ask_to_stop(self) -> None:
        """SIGTERM the worker's group: it drops the unit in flight and closes what is complete."""
        process = self.process
        if process is not None and process.pid is not None and process.is_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Wait for a worker asked to stop; kill it if it does not within the grace."""
        if self.process is not None and self.process.pid is not None:
            self.process.join(STOP_GRACE)
        self.kill()

    def stop(self) -> None:
        self.ask_to_stop()
        self.wait_stopped()

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            _kill(self.process)


def _kill(process: mp.Process) -> None:
    if process.pid is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.join(timeout=10)


def supervise(
    root: Path | str,
    task: int,
    config: RunConfig,
    retry_failed: bool = False,
    stop: threading.Event | None = None,
) -> bool:
    """Run one task to its end under a supervisor (what a Ray task or a Slurm element does).

    Returns whether the task is complete; returns early, workers stopped cleanly, on `stop` or
    on KeyboardInterrupt (Ray's cancel).
    """
    supervisor = TaskSupervisor(Path(root), task, config, retry_failed)
    supervisor.start()
    try:
        while supervisor.step():
            if stop is not None and stop.is_set():
                supervisor.stop()
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        supervisor.stop()
    finally:
        supervisor.kill()
    return supervisor.folder.task_file("completions", task).exists()
