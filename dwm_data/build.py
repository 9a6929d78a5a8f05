"""Run a builder end to end: plan, execute (resumably), finalize, summarise."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_data.executors import make_executor
from dwm_data.recipe import Recipe
from dwm_data.run import (
    Plan,
    RunFolder,
    RunStatus,
    finalize,
    make_plan,
    prepare,
    read_running,
    run_status,
    task_state,
)


@dataclass
class BuildResult:
    status: RunStatus
    dataset: dict[str, Any]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status.failed == 0 and self.status.finished


class _Progress:
    """Finished-unit count from the run folder, refreshed only for tasks that are running."""

    def __init__(self, folder: RunFolder, plan: Plan, bar: Any | None):
        self.folder, self.bar = folder, bar
        self._recent: set[int] = set()
        self.counts = {t: self._count(t) for t in range(len(plan.tasks))}
        self.total = len(plan.units)
        self.bar_task = (
            bar.add_task("units", total=self.total, completed=self.finished) if bar else None
        )

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def _count(self, task: int) -> int:
        state = task_state(self.folder, task)
        open_units = read_running(self.folder, task).get("open_units", 0)
        return len(state.done) + len(state.failed) + open_units

    def __call__(self, active: set[int]) -> None:
        for task in active | self._recent:
            self.counts[task] = self._count(task)
        self._recent = set(active)
        if self.bar is not None:
            self.bar.update(self.bar_task, completed=self.finished)


def build(
    builder: str,
    options: dict[str, Any],
    recipe: Recipe,
    out: Path,
    *,
    retry_failed: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build (or resume building) a dataset in `out`; re-running the same call finishes the rest."""
    started = time.time()
    folder = RunFolder(Path(out))
    if overwrite and folder.root.exists():
        shutil.rmtree(folder.root)
    plan = prepare(folder, make_plan(builder, options, recipe))
    with _exclusive(folder):
        return _execute(folder, plan, recipe, retry_failed, progress, started)


@contextlib.contextmanager
def _exclusive(folder: RunFolder):
    """One driver per run folder: two at once would run the same tasks twice."""
    import fcntl

    with open(folder.root / "run.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DwmDataError(f"another dwm-data process is running in {folder.root}") from exc
        yield


def _execute(
    folder: RunFolder,
    plan: Plan,
    recipe: Recipe,
    retry_failed: bool,
    progress: bool,
    started: float,
) -> BuildResult:
    tasks = [
        t
        for t in range(len(plan.tasks))
        if not folder.task_file("completions", t).exists()
        or (retry_failed and task_state(folder, t).failed)
    ]
    folder.dataset.unlink(missing_ok=True)  # dataset.json is written last; absent while running
    if tasks:
        executor = make_executor(recipe.run)
        if progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, transient=False) as bar:
                executor.run(folder.root, tasks, retry_failed, _Progress(folder, plan, bar))
        else:
            executor.run(folder.root, tasks, retry_failed, lambda active: None)
    status = run_status(folder.root)
    # dataset.json marks a finished run; a run cut short (tasks out of restarts) gets none
    dataset = finalize(folder.root, time.time() - started) if status.finished else {}
    return BuildResult(status, dataset, time.time() - started)
