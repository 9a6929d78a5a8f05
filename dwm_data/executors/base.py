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

    def gives_up(self, deaths: int) -> bool:
        """Whether a task whose worker died `deaths` times is left unfinished for now.

        `run_task` charges each death to the unit in flight, so this cap only stops a task that
        dies outside any unit (e.g. in setup) from looping; `status` shows it, a re-run resumes it.
        """
        return deaths > self.config.restarts * 2 + 2

    @abstractmethod
    def run(self, root: Path, tasks: list[int], retry_failed: bool, poll: Poll) -> None:
        """Run `tasks` of the plan in `root` until each is complete or has exhausted its restarts.

        `retry_failed` applies to the first attempt of each task only: units recorded as failed
        are tried again once, and a unit that fails again stays failed.
        """
