"""The Ray backend: each task attempt is a Ray Core task in a fresh worker process.

Ray schedules by the CPU/GPU/memory each task asks for, across a cluster that shares the run
folder's filesystem. `max_calls=1` gives every attempt a new process (as the local backend does),
timeouts come from `running/<task>.json`, and a task whose worker died is submitted again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dwm_data.executors.base import Executor, Poll
from dwm_data.executors.watch import overdue_unit
from dwm_data.extras import require
from dwm_data.recipe import parse_size
from dwm_data.run import RunFolder, run_task


def _attempt(root: str, task: int, retry_failed: bool, max_units: int) -> str:
    return run_task(root, task, retry_failed=retry_failed, max_units=max_units)


class RayExecutor(Executor):
    def run(self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll) -> None:
        ray = require("ray", "ray")
        config = self.config.ray
        started_here = not ray.is_initialized()
        if started_here:
            local = config.address is None
            ray.init(
                address=config.address,
                num_cpus=self.config.workers if local else None,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        options = {
            "num_cpus": config.cpus_per_task,
            "num_gpus": config.gpus_per_task,
            "max_retries": 0,
        }
        if config.memory_per_task:
            options["memory"] = parse_size(config.memory_per_task)
        remote = ray.remote(max_calls=1)(_attempt).options(**options)
        folder = RunFolder(root)
        retry = dict.fromkeys(tasks, retry_failed)
        deaths: Counter[int] = Counter()

        def submit(task: int):
            ref = remote.remote(str(root), task, retry[task], self.config.units_per_process)
            retry[task] = False
            return ref

        pending = {submit(task): task for task in tasks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        finished = ray.get(ref) == "complete"
                    except (ray.exceptions.RayError, ray.exceptions.TaskCancelledError):
                        deaths[task] += 1  # run_task charges the death to the unit in flight
                        finished = self.gives_up(deaths[task])
                    if not finished:
                        pending[submit(task)] = task
                for ref, task in list(pending.items()):
                    if overdue_unit(folder, task, self.config.unit_timeout):
                        ray.cancel(ref, force=True)
                        pending.pop(ref)
                        pending[submit(task)] = task
                poll(set(pending.values()))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()
        poll(set())
