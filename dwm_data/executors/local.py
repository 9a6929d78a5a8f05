"""The local backend: one fresh process per task attempt, watched by the parent.

A process per attempt (spawned, not forked, so bpy/torch state never leaks in) gives worker
recycling for free: `run_task` stops after `units_per_process` units and the task is started
again in a new process. The parent enforces the per-unit timeout by reading `running/<task>.json`
and killing the worker's whole process group (Blender or ffmpeg children included); the unit is
recorded as timed out and the task restarts past it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections import Counter, deque
from pathlib import Path

from dwm_data.executors.base import Executor, Poll
from dwm_data.executors.watch import overdue_unit
from dwm_data.run import RunFolder, run_task

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: a SIGKILLed driver takes its workers along, so a re-run never races orphans."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _task_main(root: str, task: int, retry_failed: bool, max_units: int) -> None:
    os.setpgrp()  # own process group, so a timeout kill takes the worker's children too
    _die_with_parent()
    run_task(root, task, retry_failed=retry_failed, max_units=max_units)


class LocalExecutor(Executor):
    def run(self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll) -> None:
        folder = RunFolder(root)
        context = mp.get_context("spawn")
        queue = deque(tasks)
        retry = dict.fromkeys(tasks, retry_failed)
        active: dict[int, mp.Process] = {}
        crashes: Counter[int] = Counter()
        try:
            while queue or active:
                while queue and len(active) < self.config.workers:
                    task = queue.popleft()
                    process = context.Process(
                        target=_task_main,
                        args=(str(root), task, retry[task], self.config.units_per_process),
                        name=f"dwm-task-{task}",
                    )
                    retry[task] = False
                    process.start()
                    active[task] = process
                time.sleep(0.1)
                for task, process in list(active.items()):
                    if process.is_alive():
                        if overdue_unit(folder, task, self.config.unit_timeout):
                            self._kill(process)
                            del active[task]
                            queue.append(task)
                        continue
                    process.join()
                    del active[task]
                    if folder.task_file("completions", task).exists():
                        continue
                    if process.exitcode != 0:
                        crashes[task] += 1
                        if self.gives_up(crashes[task]):
                            continue
                    queue.append(task)
                poll(set(active))
        finally:
            for process in active.values():
                self._kill(process)
        poll(set())

    @staticmethod
    def _kill(process: mp.Process) -> None:
        if process.pid is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
        process.join(timeout=10)
