"""A run's progress, read from its files alone (any machine, any time): the one reading that
`dwm-data status`, the per-task stats, the progress bar and `dataset.json` all share."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwm_data import SCHEMA_VERSION, __version__
from dwm_data.errors import DwmDataError
from dwm_data.runs.folder import RunFolder
from dwm_data.runs.plan import Plan
from dwm_data.runs.records import read_empty, read_failures, read_running
from dwm_data.store import ShardManifest, write_json_atomic


@dataclass
class TaskState:
    """Which units of a task are done (in a closed shard, or without samples) or failed."""

    units: int
    done: dict[str, str] = field(default_factory=dict)  # unit -> shard ("" without samples)
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> last failure
    shards: list[ShardManifest] = field(default_factory=list)
    complete: bool = False  # its completion marker exists
    running: dict[str, Any] = field(default_factory=dict)  # the unit in flight, see read_running

    @property
    def samples(self) -> int:
        return sum(len(m.keys) for m in self.shards)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.shards)

    @property
    def finished_units(self) -> int:
        """Done or failed, plus units done in the open shard of a live worker (the bar's count)."""
        in_open_shard = self.running.get("open_units", 0) if self.running.get("alive") else 0
        return len(self.done) + len(self.failed) + in_open_shard


def task_state(folder: RunFolder, plan: Plan, task: int) -> TaskState:
    state = TaskState(units=len(plan.tasks[task]))
    for path in sorted(folder.manifests.glob(f"*-{task:05d}-*.json")):
        if not (folder.shards / (path.stem + ".tar")).exists():
            continue
        manifest = ShardManifest.load(path)
        if manifest.task != task:
            continue
        state.shards.append(manifest)
        for unit in manifest.units:
            state.done[unit] = manifest.shard
    for unit in read_empty(folder, task):
        state.done.setdefault(unit, "")
    failed = read_failures(folder, task)
    state.failed = {u: f for u, f in failed.items() if u not in state.done}  # a late timeout record
    state.complete = folder.task_file("completions", task).exists()
    state.running = read_running(folder, task)
    return state


def write_stats(folder: RunFolder, task: int, state: TaskState, seconds: float) -> None:
    """stats/<task>.json: the task's state as `status` reads it, plus the time spent on it."""
    path = folder.task_file("stats", task)
    previous = json.loads(path.read_text()) if path.exists() else {}
    write_json_atomic(
        path,
        {
            "task": task,
            "units": state.units,
            "done": len(state.done),
            "failed": len(state.failed),
            "samples": state.samples,
            "shards": len(state.shards),
            "bytes": state.bytes,
            "seconds": round(previous.get("seconds", 0.0) + seconds, 3),
            "failures_by_stage": dict(Counter(f["stage"] for f in state.failed.values())),
        },
    )


@dataclass
class RunStatus:
    root: Path
    builder: str
    task_states: list[TaskState]
    driver: bool = False  # a driver holds the run folder's lock

    tasks = property(lambda self: len(self.task_states))
    units = property(lambda self: sum(t.units for t in self.task_states))
    done = property(lambda self: sum(len(t.done) for t in self.task_states))
    failed = property(lambda self: sum(len(t.failed) for t in self.task_states))
    samples = property(lambda self: sum(t.samples for t in self.task_states))
    shards = property(lambda self: sum(len(t.shards) for t in self.task_states))
    bytes = property(lambda self: sum(t.bytes for t in self.task_states))
    tasks_complete = property(lambda self: sum(t.complete for t in self.task_states))

    @property
    def pending(self) -> int:
        return self.units - self.done - self.failed

    @property
    def finished(self) -> bool:
        return self.tasks_complete == self.tasks

    @property
    def running(self) -> list[dict[str, Any]]:
        """Units in flight in a live worker (a dead run's leftovers are not running)."""
        return [
            {"task": i, **t.running}
            for i, t in enumerate(self.task_states)
            if t.running.get("alive")
        ]

    @property
    def state(self) -> str:
        """finished, running, or stopped (unfinished with nothing alive: re-run to resume)."""
        if self.finished:
            return "finished"
        return "running" if self.running or self.driver else "stopped"

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [{"task": i, **f} for i, t in enumerate(self.task_states) for f in t.failed.values()]

    @property
    def duplicate_keys(self) -> list[str]:
        keys = Counter(k for t in self.task_states for m in t.shards for k in m.keys)
        return sorted(k for k, n in keys.items() if n > 1)


def run_status(root: Path | str) -> RunStatus:
    folder = RunFolder(Path(root))
    if not folder.plan.exists():
        raise DwmDataError(f"{folder.root} is not a dwm-data run folder (no plan.json)")
    plan = Plan.load(folder.plan)
    tasks = [task_state(folder, plan, task) for task in range(len(plan.tasks))]
    return RunStatus(folder.root, plan.builder, tasks, folder.has_driver())


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
