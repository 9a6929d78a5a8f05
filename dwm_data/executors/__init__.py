"""Executors run the tasks of a frozen plan; every backend shares the run folder's resume files.

Backends implement `Executor.run`; builders never see them. `make_executor` picks one by name.
"""

from __future__ import annotations

from dwm_data.executors.base import Executor, Poll
from dwm_data.recipe import RunConfig


def make_executor(config: RunConfig) -> Executor:
    if config.executor == "local":
        from dwm_data.executors.local import LocalExecutor

        return LocalExecutor(config)
    if config.executor == "ray":
        from dwm_data.executors.ray import RayExecutor

        return RayExecutor(config)
    from dwm_data.executors.slurm import SlurmExecutor

    return SlurmExecutor(config)


__all__ = ["Executor", "Poll", "make_executor"]
