"""The executor interface."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from dwm_data.recipe import RunConfig

# Called between scheduling steps with the tasks currently running, so the caller can refresh
# progress from the run folder (the only channel every backend shares).
Poll = Callable[[set[int]], None]


class Executor(ABC):
    def __init__(self, config: RunConfig):
        self.config = config  # the live run settings, not those the plan was first made with

    @abstractmethod
    def run(
        self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll, stop: threading.Event
    ) -> None:
        """Run `tasks` of the plan in `root` until each is complete or has exhausted its restarts.

        `retry_failed` applies to the first attempt of each task only: units recorded as failed
        are tried again once, and a unit that fails again stays failed. When `stop` is set the
        workers are asked to close what is complete and the call returns once they have. (Slurm
        with `run.detach` returns once the arrays are submitted; the elements run on.)
        """
