"""The frozen plan: which units a run has, how they are split into tasks, what makes it one run."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dwm_data.builder import WorkUnit, make_builder, sample_steps
from dwm_data.errors import DwmDataError
from dwm_data.recipe import Recipe, RunConfig
from dwm_data.runs.folder import RunFolder
from dwm_data.store import write_json_atomic


@dataclass
class Plan:
    builder: str
    options: dict[str, Any]
    recipe: dict[str, Any]
    tasks: list[list[WorkUnit]]
    # Options that only change how failed units are treated (e.g. allow_missing_caption): they
    # may change between invocations, like --retry-failed, without making another run.
    loose: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """What makes two commands the same run: builder, options, the recipe it reads, units.

        Not the run settings (`run:` - workers, executor, timeouts) nor the task split, so a run
        resumes on other resources; not the loose options; not the sections only others read
        (`train:`, another source's knobs), so one recipe file serves a whole project and an
        edit to its training settings does not orphan a half-built dataset.
        """
        return {
            "builder": self.builder,
            "options": {k: v for k, v in self.options.items() if k not in self.loose},
            "recipe": {k: v for k, v in self.recipe.items() if k not in _unread(self.builder)},
            "units": [u.id for u in self.units],
        }

    @property
    def fingerprint(self) -> str:
        payload = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "options": self.options,
            "recipe": self.recipe,
            "loose": self.loose,
            "fingerprint": self.fingerprint,
            "tasks": [[u.to_json() for u in units] for units in self.tasks],
        }

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(path.read_text())
        tasks = [[WorkUnit.from_json(u) for u in units] for units in data["tasks"]]
        return cls(data["builder"], data["options"], data["recipe"], tasks, data.get("loose", []))

    @property
    def units(self) -> list[WorkUnit]:
        return [u for units in self.tasks for u in units]


def _unread(builder: str) -> set[str]:
    """The recipe sections a run of `builder` never reads: the run settings, the consumers'
    (the trainer's) and the knobs of the other sources, except those that run as a step of
    any builder (captions), which count as read."""
    from dwm_data.registry import CONSUMERS, SOURCES

    unread = {"run"} | {section for c in CONSUMERS.values() for section in c.sections}
    return unread | {
        source.section
        for name, source in SOURCES.items()
        if source.section and name != builder and not source.step
    }


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
    """Check what every unit needs (`preflight`), list the units and split them into tasks."""
    builder = make_builder(builder_name, recipe, options)
    builder.preflight()
    for step in sample_steps(builder):
        step.preflight()
    units = builder.plan()
    ids = Counter(u.id for u in units)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        raise DwmDataError(f"builder {builder_name} planned duplicate unit ids: {dupes[:5]}")
    tasks = split_tasks(units, default_task_count(len(units), recipe)) if units else []
    options_json = builder.options.model_dump(mode="json")
    loose = sorted(builder.loose_options)
    return Plan(builder_name, options_json, recipe.dump(), tasks, loose)


def prepare(folder: RunFolder, plan: Plan) -> tuple[Plan, bool]:
    """Freeze the plan, or check that the folder holds the same run and take its frozen split.

    Returns the plan to run and whether a loose option changed (its failed units deserve a retry).
    """
    if not folder.plan.exists():
        folder.make()
        write_json_atomic(folder.plan, plan.to_json())
        return plan, False
    folder.make()
    existing = Plan.load(folder.plan)
    if existing.fingerprint != plan.fingerprint:
        raise DwmDataError(
            f"{folder.root} holds a different run (builder {existing.builder}, "
            f"{len(existing.units)} units; differs in {_difference(existing, plan)}); "
            "use another output folder or --overwrite"
        )
    if plan.recipe.get("run", {}).get("tasks") and len(plan.tasks) != len(existing.tasks):
        logging.getLogger(__name__).warning(
            f"run.tasks {len(plan.tasks)} is not applied: this run was split into "
            f"{len(existing.tasks)} tasks when it began, and its finished shards belong to them "
            "(a new output folder takes the new split)"
        )
    live = {k: plan.options[k] for k in existing.loose if k in plan.options}
    changed = any(existing.options.get(k) != v for k, v in live.items())
    if changed:
        existing.options.update(live)
        write_json_atomic(folder.plan, existing.to_json())
    return existing, changed


def _difference(old: Plan, new: Plan) -> str:
    """Which parts of the run's identity differ, named the way the user gave them."""
    a, b = old.identity(), new.identity()
    parts = []
    if a["builder"] != b["builder"]:
        parts.append(f"builder ({a['builder']} vs {b['builder']})")
    for section in ("options", "recipe"):
        keys = sorted(k for k in a[section].keys() | b[section].keys())
        parts += [f"{section} {k}" for k in keys if a[section].get(k) != b[section].get(k)]
    if a["units"] != b["units"]:
        parts.append(f"units ({len(a['units'])} vs {len(b['units'])})")
    return ", ".join(parts) or "its plan"


def live_settings(folder: RunFolder) -> RunConfig:
    """The run settings of the invocation that runs the tasks now (`run.json`, written by the
    driver), else those the plan was made with."""
    if folder.settings.exists():
        return RunConfig.model_validate(json.loads(folder.settings.read_text()))
    return RunConfig.model_validate(Plan.load(folder.plan).recipe.get("run", {}))
