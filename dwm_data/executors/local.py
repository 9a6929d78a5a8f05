"""The local backend: up to `run.workers` tasks at once, each under its own supervisor."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

from dwm_data.executors.base import Executor, Poll
from dwm_data.executors.supervise import TaskSupervisor


class LocalExecutor(Executor):
    def run(
        self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll, stop: threading.Event
    ) -> None:
        queue = deque(tasks)
        active: dict[int, TaskSupervisor] = {}
        try:
            while (queue or active) and not stop.is_set():
                while queue and len(active) < self.config.workers:
                    task = queue.popleft()
                    active[task] = TaskSupervisor(root, task, self.config, retry_failed)
                    active[task].start()
                time.sleep(0.1)
                for task, supervisor in list(active.items()):
                    if not supervisor.step():
                        del active[task]
                poll(set(active))
            for supervisor in active.values():  # stop requested: all at once, then wait
                supervisor.ask_to_stop()
            for supervisor in active.values():
                supervisor.wait_stopped()
        finally:
            for supervisor in active.values():
                supervisor.kill()
        poll(set())
