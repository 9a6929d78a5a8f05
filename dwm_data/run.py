"""Resumable runs: the run folder, the frozen plan, and the task that turns units into shards.

The pattern is datatrove's and video2dataset's: the plan is frozen to `plan.json` (units and
their task), each task writes its own shards, stats, failures, log and completion marker, and a
re-run with the same command skips what is finished. Any process that can see the run folder can
run any task (`run_task`), which is all a Slurm array element or a Ray worker needs.

Per unit the outcome is recorded exactly once: in a shard manifest (done) or in
`failures/<task>.jsonl` (failed, with stage and reason). While a unit is being processed,
`running/<task>.json` names it; a task that finds such a file from a dead predecessor records
that unit as crashed and moves on, so a unit that kills its worker cannot stall the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwm_data import SCHEMA_VERSION, __version__
from dwm_data.builder import UnitContext, WorkUnit, make_builder
from dwm_data.errors import DwmDataError, SampleError, UnitError
from dwm_data.recipe import Recipe
from dwm_data.store import ShardManifest, ShardWriter, write_json_atomic


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    plan = property(lambda self: self.root / "plan.json")
    dataset = property(lambda self: self.root / "dataset.json")
    shards = property(lambda self: self.root / "shards")
    manifests = property(lambda self: self.root / "manifests")
    stats = property(lambda self: self.root / "stats")
    failures = property(lambda self: self.root / "failures")
    logs = property(lambda self: self.root / "logs")
    completions = property(lambda self: self.root / "completions")
    running = property(lambda self: self.root / "running")
    scratch = property(lambda self: self.root / "scratch")

    def make(self) -> None:
        for sub in (
            "shards",
            "manifests",
            "stats",
            "failures",
            "logs",
            "completions",
            "running",
            "scratch",
        ):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def task_file(self, kind: str, task: int) -> Path:
        if kind == "empty":  # beside the manifests: the other record of finished units
            return self.manifests / f"{task:05d}.no-samples.jsonl"
        suffix = {"stats": ".json", "failures": ".jsonl", "logs": ".log", "running": ".json"}.get(
            kind, ""
        )
        return self.root / kind / f"{task:05d}{suffix}"

    def unit_scratch(self, unit_id: str) -> Path:
        safe = hashlib.sha1(unit_id.encode()).hexdigest()[:16]
        return self.scratch / safe


@dataclass
class Plan:
    builder: str
    options: dict[str, Any]
    recipe: dict[str, Any]
    tasks: list[list[WorkUnit]]

    @property
    def fingerprint(self) -> str:
        """What makes two commands 'the same run': builder, options, recipe and the unit list."""
        payload = json.dumps(
            [self.builder, self.options, self.recipe, [[u.id for u in t] for t in self.tasks]],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "options": self.options,
            "recipe": self.recipe,
            "fingerprint": self.fingerprint,
            "tasks": [[u.to_json() for u in units] for units in self.tasks],
        }

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(path.read_text())
        tasks = [[WorkUnit.from_json(u) for u in units] for units in data["tasks"]]
        return cls(data["builder"], data["options"], data["recipe"], tasks)

    @property
    def units(self) -> list[WorkUnit]:
        return [u for units in self.tasks for u in units]


def split_tasks(units: Sequence[WorkUnit], tasks: int) -> list[list[WorkUnit]]:
    """Contiguous runs of units with about equal total weight (neighbours often share inputs)."""
    tasks = max(1, min(tasks, len(units)))
    total = sum(u.weight for u in units) or 1.0
    out: list[list[WorkUnit]] = [[] for _ in range(tasks)]
    acc = 0.0
    for unit in units:
        index = min(tasks - 1, int(acc / total * tasks))
        out[index].append(unit)
        acc += unit.weight
    return [t for t in out if t]


def default_task_count(units: int, recipe: Recipe) -> int:
    """Enough tasks to keep every worker busy and balance uneven units, few enough for full shards."""
    if recipe.run.tasks:
        return recipe.run.tasks
    return max(1, min(units, recipe.run.workers * 4, max(recipe.run.workers, units // 8)))


def make_plan(builder_name: str, options: dict[str, Any], recipe: Recipe) -> Plan:
    builder = make_builder(builder_name, recipe, options)
    units = builder.plan()
    ids = Counter(u.id for u in units)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        raise DwmDataError(f"builder {builder_name} planned duplicate unit ids: {dupes[:5]}")
    tasks = split_tasks(units, default_task_count(len(units), recipe)) if units else []
    return Plan(builder_name, builder.options.model_dump(mode="json"), recipe.dump(), tasks)


def prepare(folder: RunFolder, plan: Plan) -> Plan:
    """Freeze the plan, or check that an existing run folder holds the same run."""
    folder.make()
    if folder.plan.exists():
        existing = Plan.load(folder.plan)
        if existing.fingerprint != plan.fingerprint:
            raise DwmDataError(
                f"{folder.root} holds a different run (builder {existing.builder}, "
                f"{len(existing.units)} units, plan {existing.fingerprint} vs {plan.fingerprint}); "
                "use another output folder or --overwrite"
            )
        return existing
    write_json_atomic(folder.plan, plan.to_json())
    return plan


# --- the task ---------------------------------------------------------------------------------


@dataclass
class TaskState:
    """Which units of a task are done (in a closed shard) or failed, from the files alone."""

    done: dict[str, str] = field(default_factory=dict)  # unit -> shard
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> last failure record
    shards: list[ShardManifest] = field(default_factory=list)


def read_failures(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if record.get("retracted"):
                out.pop(record["unit"], None)
            else:
                out[record["unit"]] = record
    return out


def task_state(folder: RunFolder, task: int) -> TaskState:
    state = TaskState()
    for path in sorted(folder.manifests.glob(f"*-{task:05d}-*.json")):
        if not (folder.shards / (path.stem + ".tar")).exists():
            continue
        manifest = ShardManifest.load(path)
        if manifest.task != task:
            continue
        state.shards.append(manifest)
        for unit in manifest.units:
            state.done[unit] = manifest.shard
    empty = folder.task_file("empty", task)
    if empty.exists():  # units that legitimately produced no sample (e.g. nothing moved)
        for line in empty.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                state.done.setdefault(json.loads(line)["unit"], "")
    failed = read_failures(folder.task_file("failures", task))
    state.failed = {u: f for u, f in failed.items() if u not in state.done}  # a late timeout record
    return state


def record_failure(
    folder: RunFolder, task: int, unit: str, stage: str, error: str, message: str
) -> None:
    record = {"unit": unit, "stage": stage, "error": error, "message": message, "time": time.time()}
    _append_line(folder.task_file("failures", task), record)


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line durably (a kill can at worst cut the line being written)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _retract_failures(folder: RunFolder, task: int, units: list[str]) -> None:
    with open(folder.task_file("failures", task), "a") as handle:
        for unit in units:
            handle.write(json.dumps({"unit": unit, "retracted": True, "time": time.time()}) + "\n")


def _task_logger(folder: RunFolder, task: int) -> logging.Logger:
    logger = logging.getLogger(f"dwm_data.task.{task}")
    logger.handlers.clear()
    handler = logging.FileHandler(folder.task_file("logs", task))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def run_task(
    root: Path | str, task: int, retry_failed: bool = False, max_units: int | None = None
) -> str:
    """Process the pending units of one task; returns "complete" or "recycle" (stopped early).

    Safe to call again after any kill: finished shards are kept, the open one is redone.
    """
    folder = RunFolder(Path(root))
    plan = Plan.load(folder.plan)
    units = plan.tasks[task]
    log = _task_logger(folder, task)
    recipe = Recipe.model_validate(plan.recipe)
    running = folder.task_file("running", task)
    resumed = _stale_unit(folder, task, running, recipe.run.restarts, log)
    state = task_state(folder, task)
    if retry_failed and state.failed:
        _retract_failures(folder, task, [u for u in state.failed if u not in state.done])
        folder.task_file("completions", task).unlink(missing_ok=True)
        state.failed = {}
    todo = [u for u in units if u.id not in state.done and u.id not in state.failed]
    writer = ShardWriter(
        folder.shards,
        folder.manifests,
        recipe.shards.name,
        task,
        recipe.shards.maxcount,
        recipe.shards.maxsize,
    )
    started = time.time()
    if todo:
        builder = make_builder(plan.builder, recipe, plan.options)
        limit = min(x for x in (max_units, builder.max_units_per_process, len(todo)) if x)
        try:
            builder.setup()
        except (
            Exception
        ) as exc:  # e.g. a missing model file: every pending unit fails with the reason
            for unit in todo:
                record_failure(
                    folder, task, unit.id, "setup", type(exc).__name__, str(exc).splitlines()[0]
                )
            log.error("setup failed: %s\n%s", exc, traceback.format_exc())
            todo = []
        log.info(
            "task %d: %d units to do (%d done, %d failed)",
            task,
            len(todo),
            len(state.done),
            len(state.failed),
        )
        for unit in todo[:limit] if todo else []:
            write_json_atomic(
                running,
                {
                    "unit": unit.id,
                    "attempt": resumed.get(unit.id, 0) + 1,
                    "since": time.time(),
                    "pid": os.getpid(),
                    "open_units": writer.open_units,
                },
            )
            scratch = folder.unit_scratch(unit.id)
            scratch.mkdir(parents=True, exist_ok=True)
            ctx = UnitContext(
                scratch=scratch, log=log, heartbeat=lambda m, u=unit.id: log.info("%s: %s", u, m)
            )
            t0 = time.time()
            try:
                samples = list(builder.process(unit, ctx))
                _check_unit(unit, samples)
            except Exception as exc:  # every failure costs one unit, never the run
                stage, message = describe_failure(exc)
                record_failure(folder, task, unit.id, stage, type(exc).__name__, message)
                log.error(
                    "unit %s failed at %s: %s\n%s", unit.id, stage, message, traceback.format_exc()
                )
            else:
                if samples:
                    writer.add_unit(unit.id, samples)
                else:  # nothing to publish, so it is done as soon as it is recorded
                    _append_line(folder.task_file("empty", task), {"unit": unit.id})
                log.info("unit %s: %d samples in %.1fs", unit.id, len(samples), time.time() - t0)
            shutil.rmtree(scratch, ignore_errors=True)
        writer.close()
        running.unlink(missing_ok=True)
    state = task_state(folder, task)
    complete = all(u.id in state.done or u.id in state.failed for u in units)
    _write_stats(folder, task, units, state, time.time() - started)
    if complete:
        folder.task_file("completions", task).touch()
        return "complete"
    return "recycle"


def read_running(folder: RunFolder, task: int) -> dict[str, Any]:
    """The unit in flight in `task` ({} when none); a file cut by a kill reads as none."""
    try:
        return json.loads(folder.task_file("running", task).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _stale_unit(
    folder: RunFolder, task: int, running: Path, restarts: int, log: logging.Logger
) -> dict[str, int]:
    """Handle the unit a dead predecessor was processing; returns {unit: attempts so far}.

    Killing a whole run also leaves this file, so one death does not condemn the unit: it is
    redone, and only a unit that has taken down its worker `restarts` times is recorded as crashed.
    """
    if not running.exists():
        return {}
    dead = read_running(folder, task)
    running.unlink()
    unit, attempts = dead.get("unit"), dead.get("attempt", 1)
    if not unit:
        return {}
    if attempts >= restarts:
        record_failure(
            folder,
            task,
            unit,
            "crash",
            "WorkerDied",
            f"the worker died {attempts} times while processing this unit (killed, out of memory, or crashed)",
        )
        log.error("unit %s: worker died %d times; recorded as failed", unit, attempts)
        return {}
    log.warning("unit %s: worker died during attempt %d; redoing it", unit, attempts)
    return {unit: attempts}


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


def _write_stats(
    folder: RunFolder, task: int, units: list[WorkUnit], state: TaskState, seconds: float
) -> None:
    path = folder.task_file("stats", task)
    previous = json.loads(path.read_text()) if path.exists() else {}
    write_json_atomic(
        path,
        {
            "task": task,
            "units": len(units),
            "done": len(state.done),
            "failed": len(state.failed),
            "samples": sum(len(m.keys) for m in state.shards),
            "shards": len(state.shards),
            "bytes": sum(m.bytes for m in state.shards),
            "seconds": round(previous.get("seconds", 0.0) + seconds, 3),
            "failures_by_stage": dict(Counter(f["stage"] for f in state.failed.values())),
        },
    )


# --- the run as a whole -----------------------------------------------------------------------


@dataclass
class RunStatus:
    root: Path
    builder: str
    units: int
    done: int
    failed: int
    samples: int
    shards: int
    bytes: int
    tasks: int
    tasks_complete: int
    running: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    duplicate_keys: list[str]

    @property
    def pending(self) -> int:
        return self.units - self.done - self.failed

    @property
    def finished(self) -> bool:
        return self.tasks_complete == self.tasks


def run_status(root: Path | str) -> RunStatus:
    """Progress and failures of a run, from its files alone (any machine, any time)."""
    folder = RunFolder(Path(root))
    if not folder.plan.exists():
        raise DwmDataError(f"{folder.root} is not a dwm-data run folder (no plan.json)")
    plan = Plan.load(folder.plan)
    done = failed = samples = shards = size = complete = 0
    failures: list[dict[str, Any]] = []
    keys: Counter[str] = Counter()
    running = []
    for task in range(len(plan.tasks)):
        state = task_state(folder, task)
        done += len(state.done)
        failed += len(state.failed)
        samples += sum(len(m.keys) for m in state.shards)
        shards += len(state.shards)
        size += sum(m.bytes for m in state.shards)
        for manifest in state.shards:
            keys.update(manifest.keys)
        failures.extend({"task": task, **f} for f in state.failed.values())
        complete += folder.task_file("completions", task).exists()
        live = read_running(folder, task)
        if live:
            running.append({"task": task, **live})
    return RunStatus(
        folder.root,
        plan.builder,
        len(plan.units),
        done,
        failed,
        samples,
        shards,
        size,
        len(plan.tasks),
        complete,
        running,
        failures,
        sorted(k for k, n in keys.items() if n > 1),
    )


def finalize(root: Path | str, seconds: float) -> dict[str, Any]:
    """Write `dataset.json` (last, atomically): the resolved recipe, totals and the shard list."""
    folder = RunFolder(Path(root))
    plan = Plan.load(folder.plan)
    status = run_status(root)
    if status.duplicate_keys:
        raise DwmDataError(f"duplicate sample keys across units: {status.duplicate_keys[:5]}")
    shards = sorted(p.name for p in folder.shards.glob("*.tar"))
    dataset = {
        "schema_version": SCHEMA_VERSION,
        "tool": f"dwm-data {__version__}",
        "builder": plan.builder,
        "options": plan.options,
        "recipe": plan.recipe,
        "plan": plan.fingerprint,
        "totals": {
            "units": status.units,
            "done": status.done,
            "failed": status.failed,
            "samples": status.samples,
            "shards": len(shards),
            "bytes": status.bytes,
            "seconds": round(seconds, 2),
        },
        "failures_by_stage": dict(Counter(f["stage"] for f in status.failures)),
        "shards": shards,
    }
    write_json_atomic(folder.dataset, dataset)
    return dataset
