"""The Ray backend: each task is a Ray Core task that supervises its own worker processes.

Ray schedules by the CPU/GPU/memory each task asks for, across a cluster that shares the run
folder's filesystem; each Ray task's workers see only the GPUs Ray gave it, and
`ray/placements.jsonl` says which node ran which task. The Ray task is the task's living supervisor (`supervise`): it sees its
workers die and charges the unit; when the Ray task itself is lost (a node, the driver), no unit
is charged and the task is submitted again. Stopping cancels the tasks gently (a
KeyboardInterrupt in the wrapper), which stops its worker cleanly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from dwm_data.executors.base import Executor, Poll
from dwm_data.executors.supervise import STOP_GRACE, supervise
from dwm_data.extras import require
from dwm_data.recipe import RunConfig, parse_size
from dwm_data.runs import records
from dwm_data.runs.folder import RunFolder


def _attempt(root: str, task: int, config: dict, retry_failed: bool) -> bool:
    import ray

    gpus = [str(g) for g in ray.get_gpu_ids()]
    see_only(gpus)
    node = ray.get_runtime_context().get_node_id()
    placements = Path(root) / "ray" / "placements.jsonl"
    placements.parent.mkdir(exist_ok=True)
    records.append_line(placements, {"task": task, "node": node, "gpus": gpus, "time": time.time()})
    return supervise(root, task, RunConfig.model_validate(config), retry_failed)


def see_only(gpus: list[str]) -> None:
    """Give the task's workers (spawned after this) exactly the GPUs Ray assigned to the task.

    Ray sets CUDA_VISIBLE_DEVICES only for a task that holds GPUs; one with none keeps what the
    node was started with (on a Slurm allocation, all of its GPUs), so it is set here always.
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)


def _keep_stop_signals(stop: threading.Event) -> None:
    """`ray.init` installs Ray's own SIGINT/SIGTERM handlers in the driver, which abort it; put
    back the clean stop. (A signal sent to the whole process group also reaches the local Ray's
    raylet, which then takes its workers along: their units are redone, charged to no one.)"""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())


def _wait_stopped(folder: RunFolder, tasks: set[int]) -> None:
    """Wait until the stopped workers have closed their shards (their running files go), which
    Ray's own wait does not tell: a cancelled task's ref is ready at once."""
    deadline = time.time() + STOP_GRACE + 5
    while time.time() < deadline and any(
        records.read_running(folder, t).get("alive") for t in tasks
    ):
        time.sleep(0.2)


class RayExecutor(Executor):
    def run(
        self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll, stop: threading.Event
    ) -> None:
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
            _keep_stop_signals(stop)
        options = {
            "num_cpus": config.cpus_per_task,
            "num_gpus": config.gpus_per_task,
            "max_retries": 0,
        }
        if config.memory_per_task:
            options["memory"] = parse_size(config.memory_per_task)
        remote = ray.remote(max_calls=1)(_attempt).options(**options)
        settings = self.config.model_dump(mode="json")
        retry = dict.fromkeys(tasks, retry_failed)
        lost: Counter[int] = Counter()

        def submit(task: int):
            ref = remote.remote(str(root), task, settings, retry[task])
            retry[task] = False
            return ref

        pending = {submit(task): task for task in tasks}
        try:
            while pending and not stop.is_set():
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    task = pending.pop(ref)
                    try:
                        ray.get(ref)  # False: the task gave up on a worker dying outside units
                    except (ray.exceptions.RayError, ray.exceptions.TaskCancelledError):
                        lost[task] += 1  # the supervisor itself was lost: no unit pays
                        if lost[task] <= self.config.restarts:
                            pending[submit(task)] = task
                poll(set(pending.values()))
            if pending:  # stop requested: a KeyboardInterrupt in each wrapper stops its worker
                for ref in pending:
                    ray.cancel(ref, force=False)
                _wait_stopped(RunFolder(root), set(pending.values()))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()
        poll(set())
