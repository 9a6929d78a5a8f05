"""Run a builder end to end: plan, execute (resumably), finalize, summarise."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwm_data.executors import make_executor
from dwm_data.output import output_to
from dwm_data.recipe import Recipe
from dwm_data.runs.folder import RunFolder, claim
from dwm_data.runs.plan import Plan, make_plan, prepare
from dwm_data.runs.status import RunStatus, finalize, run_status, task_state
from dwm_data.store import write_json_atomic


@dataclass
class BuildResult:
    status: RunStatus
    dataset: dict[str, Any]
    seconds: float
    stopped: bool = False  # by SIGINT/SIGTERM: what was complete is kept

    @property
    def ok(self) -> bool:
        return self.status.failed == 0 and self.status.finished


class _Progress:
    """Finished-unit count from the run folder, refreshed only for tasks that are running."""

    def __init__(self, folder: RunFolder, plan: Plan, bar: Any | None):
        self.folder, self.plan, self.bar = folder, plan, bar
        self._recent: set[int] = set()
        self.counts = {t: self._count(t) for t in range(len(plan.tasks))}
        self.bar_task = (
            bar.add_task("units", total=len(plan.units), completed=self.finished) if bar else None
        )

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def _count(self, task: int) -> int:
        return task_state(self.folder, self.plan, task).finished_units

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
    """Build (or resume building) a dataset in `out`; re-running the same call finishes the rest.

    The run settings (`recipe.run`) are the live ones: a run resumes on any worker count or
    executor, keeping the task split frozen in its plan.
    """
    started = time.time()
    folder = RunFolder(Path(out))
    # Planned before touching OUT, so a bad input changes nothing; what libraries print while
    # planning (Blender opening a .blend) is kept for OUT/logs/plan.log.
    with tempfile.TemporaryDirectory() as scratch:
        printed = Path(scratch) / "plan.log"
        with output_to(printed):
            plan = make_plan(builder, options, recipe)
        claim(folder, overwrite)
        plan, loosened = prepare(folder, plan)
        if printed.stat().st_size:
            with open(folder.root / "logs" / "plan.log", "ab") as log:
                log.write(printed.read_bytes())
    with folder.lock(), _stop_on_signals() as stop:
        write_json_atomic(folder.settings, recipe.run.model_dump(mode="json"))
        return _execute(folder, plan, recipe, retry_failed or loosened, progress, started, stop)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the executor to stop cleanly instead of killing the driver mid-write."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _execute(
    folder: RunFolder,
    plan: Plan,
    recipe: Recipe,
    retry_failed: bool,
    progress: bool,
    started: float,
    stop: threading.Event,
) -> BuildResult:
    tasks = []
    for task in range(len(plan.tasks)):
        state = task_state(folder, plan, task)
        if not state.complete or (retry_failed and state.failed):
            tasks.append(task)
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
                executor.run(folder.root, tasks, retry_failed, _Progress(folder, plan, bar), stop)
        else:
            executor.run(folder.root, tasks, retry_failed, lambda active: None, stop)
    status = run_status(folder.root)
    # dataset.json marks a finished run; a run cut short (stopped, out of restarts) gets none
    dataset = finalize(folder.root, time.time() - started) if status.finished else {}
    return BuildResult(status, dataset, time.time() - started, stopped=stop.is_set())
