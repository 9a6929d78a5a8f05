"""The executor interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from dwm_data.recipe import RunConfig

# Called between scheduling steps with the tasks currently running, so the caller can refresh
# progress from the run folder (the only channel every backend shares).
Poll = Callable[[set[int]], None]


class Executor(ABC):
    def __init__(self, config: RunConfig):
        self.config = config

    @abstractmethod
    def run(self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll) -> None:
        """Run `tasks` of the plan in `root` until each is complete or has exhausted its restarts.

        `retry_failed` applies to the first attempt of each task only: units recorded as failed
        are tried again once, and a unit that fails again stays failed.
        """
