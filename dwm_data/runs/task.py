"""The task: what a worker process does with its share of the plan, safe to redo after any kill.

Per unit the outcome is recorded exactly once: in a shard manifest (done), in the list of units
without samples, or in `failures/<task>.jsonl` (failed, with stage and reason). While a unit is
being processed, `running/<task>.json` names it, so the supervisor knows whom a death concerns.
On SIGINT/SIGTERM the worker drops the unit in flight (its scratch is kept), closes the shard
of the units it finished and exits; nothing complete is lost.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from dwm_data.builder import Builder, Step, UnitContext, WorkUnit, make_builder, sample_steps
from dwm_data.errors import SampleError, UnitError
from dwm_data.recipe import Recipe
from dwm_data.runs import records
from dwm_data.runs.folder import RunFolder
from dwm_data.runs.plan import Plan
from dwm_data.runs.status import TaskState, task_state, write_stats
from dwm_data.store import ShardWriter


class TaskStopped(BaseException):
    """Raised in a worker by SIGINT/SIGTERM while a unit is in flight (not an `Exception`, so
    no builder's error handling can swallow it)."""


class _StopRequest:
    """Turns SIGINT/SIGTERM into a request; it interrupts only a unit, never a shard's closing."""

    def __init__(self) -> None:
        self.requested = False
        self._interruptible = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._interruptible:
            raise TaskStopped(signal.Signals(signum).name)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.requested:
            raise TaskStopped("stop requested")
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False


STOP = _StopRequest()  # installed by the worker process's entry point


def run_task(
    root: Path | str, task: int, retry_failed: bool = False, max_units: int | None = None
) -> str:
    """Process the pending units of one task.

    Returns "complete", "recycle" (stopped after `max_units`, start it again) or "stopped".
    """
    folder = RunFolder(Path(root))
    plan = Plan.load(folder.plan)
    log = _task_logger(folder, task)
    _forgive_unseen_death(folder, task, log)
    state = task_state(folder, plan, task)
    if retry_failed and state.failed:
        records.retract_failures(folder, task, list(state.failed))
        folder.task_file("completions", task).unlink(missing_ok=True)
        state.failed = {}
    todo = [u for u in plan.tasks[task] if u.id not in state.done and u.id not in state.failed]
    started = time.time()
    if todo:
        log.info(
            "task %d: %d units to do (%d done, %d failed)",
            task,
            len(todo),
            len(state.done),
            len(state.failed),
        )
        _process(folder, plan, task, todo, max_units, log)
    return _finish(folder, plan, task, time.time() - started)


def _forgive_unseen_death(folder: RunFolder, task: int, log: logging.Logger) -> None:
    """A running file no supervisor cleared is left by a run that died as a whole: redo free."""
    stale = records.read_running(folder, task)
    if stale:
        log.warning("unit %s: the run stopped while it was in flight; redoing it", stale["unit"])
        records.clear_running(folder, task)


def _process(
    folder: RunFolder,
    plan: Plan,
    task: int,
    todo: list[WorkUnit],
    max_units: int | None,
    log: logging.Logger,
) -> None:
    recipe = Recipe.model_validate(plan.recipe)
    builder = make_builder(plan.builder, recipe, plan.options)
    steps = sample_steps(builder)
    if not _setup(builder, steps, folder, task, todo, log):
        return
    limit = min(x for x in (max_units, builder.max_units_per_process, len(todo)) if x)
    shards = recipe.shards
    writer = ShardWriter(
        folder.shards, folder.manifests, shards.name, task, shards.maxcount, shards.maxsize
    )
    try:
        for unit in todo[:limit]:
            _run_unit(folder, task, builder, steps, unit, writer, log)
    except TaskStopped as stop:
        log.warning("task %d stopped (%s); the unit in flight will be redone", task, stop)
    writer.close()
    records.clear_running(folder, task)


def _setup(
    builder: Builder,
    steps: list[Step],
    folder: RunFolder,
    task: int,
    todo: list[WorkUnit],
    log: logging.Logger,
) -> bool:
    """Load the builder's and its steps' models; when that fails every pending unit fails with
    the reason."""
    try:
        builder.setup()
        for step in steps:
            step.setup()
            log.info("step %s set up", type(step).__name__)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for unit in todo:
            records.record_failure(folder, task, unit.id, "setup", type(exc).__name__, message)
        log.error("setup failed: %s\n%s", exc, traceback.format_exc())
        return False
    return True


def _run_unit(
    folder: RunFolder,
    task: int,
    builder: Builder,
    steps: list[Step],
    unit: WorkUnit,
    writer: ShardWriter,
    log: logging.Logger,
) -> None:
    """One unit, start to record; every failure costs this unit, never the run."""
    records.write_running(folder, task, unit.id, writer.open_units)
    scratch = folder.unit_scratch(unit.id)
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = UnitContext(
        scratch=scratch, log=log, heartbeat=lambda m, u=unit.id: log.info("%s: %s", u, m)
    )
    started = time.time()
    try:
        with STOP.interruptible():
            samples = list(builder.process(unit, ctx))
            for step in steps:
                samples = step.apply(samples, ctx)
        _check_unit(unit, samples)
    except Exception as exc:
        stage, message = describe_failure(exc)
        records.record_failure(folder, task, unit.id, stage, type(exc).__name__, message)
        log.error("unit %s failed at %s: %s\n%s", unit.id, stage, message, traceback.format_exc())
    else:
        if samples:
            writer.add_unit(unit.id, samples)
        else:  # nothing to publish, so it is done as soon as it is recorded
            records.record_empty(folder, task, unit.id)
        log.info("unit %s: %d samples in %.1fs", unit.id, len(samples), time.time() - started)
    shutil.rmtree(scratch, ignore_errors=True)


def _finish(folder: RunFolder, plan: Plan, task: int, seconds: float) -> str:
    state: TaskState = task_state(folder, plan, task)
    complete = len(state.done) + len(state.failed) == state.units
    write_stats(folder, task, state, seconds)
    if complete:
        folder.task_file("completions", task).touch()
        return "complete"
    return "stopped" if STOP.requested else "recycle"


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(stage, one-line message) for the failures file."""
    if isinstance(exc, UnitError):
        stage, message = exc.stage, exc.message
    else:
        stage, message = ("sample" if isinstance(exc, SampleError) else "unexpected"), str(exc)
    lines = message.strip().splitlines()
    return stage, lines[0] if lines else type(exc).__name__


def _check_unit(unit: WorkUnit, samples: list) -> None:
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise SampleError(f"unit {unit.id} produced duplicate keys")
    for sample in samples:
        sample.validate()


def _task_logger(folder: RunFolder, task: int) -> logging.Logger:
    logger = logging.getLogger(f"dwm_data.task.{task}")
    logger.handlers.clear()
    handler = logging.FileHandler(folder.task_file("logs", task))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
