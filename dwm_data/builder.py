"""The one interface every source implements, and how a builder is found by name.

A builder turns an input (a dataset root, a capture) into a frozen list of `WorkUnit`s, then
each unit into zero or more `Sample`s. It knows nothing about shards, processes or resuming:
the run machinery (`dwm_data.runs`) and the executors do that, the same way for every source.
Builders are rebuilt from `plan.json` (name + options + recipe) in whatever process runs a task,
so a Slurm array element or a Ray worker needs nothing but the run folder.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dwm_data.errors import DwmDataError
from dwm_data.options import BuilderOptions
from dwm_data.recipe import Recipe
from dwm_data.registry import SOURCES, load
from dwm_data.sample import Sample


@dataclass(frozen=True)
class WorkUnit:
    """The smallest piece of work that is done whole or not at all (a clip, a recording)."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # relative cost, used to balance units across tasks

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "payload": self.payload, "weight": self.weight}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkUnit:
        return cls(data["id"], data.get("payload", {}), data.get("weight", 1.0))


@dataclass
class UnitContext:
    """What the run gives a builder while it processes one unit."""

    scratch: Path  # kept across restarts of this unit (resume caches); removed once it is done
    log: logging.Logger
    heartbeat: Callable[[str], None] = lambda message: None  # "still alive, doing X"


class Builder(ABC):
    """A source of samples. Subclasses set `Options` and implement `plan` and `process`; a
    registered source's name, options and recipe section are declared in `dwm_data.registry`."""

    Options: ClassVar[type[BuilderOptions]]
    # Replace the worker process after this many units, whatever the recipe says (1 for Blender,
    # whose state leaks across scenes); None defers to `run.units_per_process`.
    max_units_per_process: ClassVar[int | None] = None
    # Options that only change how failed units are treated (e.g. keep a clip without caption):
    # changing one resumes the same run and retries its failed units, as --retry-failed does.
    loose_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, recipe: Recipe, options: BuilderOptions):
        self.recipe = recipe
        self.options = options

    def preflight(self) -> None:  # noqa: B027 - optional hook, a builder without inputs needs none
        """Check once, before the plan is written or any unit runs, what every unit needs (input
        roots, model files, backends): a miss raises `DwmDataError` (one line, exit 2) instead
        of failing each unit alike."""

    @abstractmethod
    def plan(self) -> list[WorkUnit]:
        """List the work units of the input; cheap, deterministic, no heavy imports if possible."""

    def setup(self) -> None:  # noqa: B027 - optional hook, most builders need none
        """Load models or open resources once per worker process, before the first unit."""

    @abstractmethod
    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        """Turn one unit into samples; raise `UnitError` (or any error) to fail just this unit."""


class Step(ABC):
    """Work a recipe turns on for every builder's samples (captioning, `caption.step`): done
    between a unit's `process` and its shard, so it is done once per unit, resumes and fails
    with it. A registered source offers one as `Source.step`."""

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """As `Builder.preflight`: what the step needs for every unit, one line when missing."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models once per worker process, after the builder's `setup`."""

    @abstractmethod
    def apply(self, samples: list[Sample], ctx: UnitContext) -> list[Sample]:
        """One unit's samples, changed; raise `UnitError` to fail the unit."""


def sample_steps(builder: Builder) -> list[Step]:
    """The steps `builder`'s recipe turns on, from the registry (cheap: nothing is loaded)."""
    steps = (load(source.step)(builder) for source in SOURCES.values() if source.step)
    return [step for step in steps if step is not None]


def builder_class(name: str) -> type[Builder]:
    """A registered source's builder by name, or any importable one as "package.module:Class"
    (plugins)."""
    target = SOURCES[name].builder if name in SOURCES else name if ":" in name else None
    if target is None:
        raise DwmDataError(f"unknown builder '{name}' (known: {', '.join(SOURCES)})")
    try:
        return load(target)
    except (ImportError, AttributeError) as exc:
        raise DwmDataError(f"builder '{name}' cannot be loaded from {target}: {exc}") from exc


def make_builder(name: str, recipe: Recipe, options: dict[str, Any] | BuilderOptions) -> Builder:
    """The builder with its options checked: a wrong one is one line naming it (and, for a
    typo, the options there are), never a traceback."""
    from pydantic import ValidationError

    cls = builder_class(name)
    try:
        opts = (
            options if isinstance(options, BuilderOptions) else cls.Options.model_validate(options)
        )
    except ValidationError as exc:
        errors = exc.errors()  # a typo first: it explains the "missing" option that goes with it
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(cls.Options.model_fields)
            raise DwmDataError(f"{name}: unknown option '{where}' (allowed: {allowed})") from exc
        raise DwmDataError(f"{name}: option {where}: {error['msg']}") from exc
    return cls(recipe, opts)
