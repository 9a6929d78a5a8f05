"""The run folder's layout, and which folders a run may be written into or deleted."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dwm_data import __version__
from dwm_data.errors import DwmDataError

# Written before anything else, so a folder cut short before plan.json still reads as ours.
MARKER = ".dwm-data-run"
SUBDIRS = (
    "shards",
    "manifests",
    "stats",
    "failures",
    "deaths",
    "logs",
    "completions",
    "running",
    "scratch",
)


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    plan = property(lambda self: self.root / "plan.json")
    settings = property(lambda self: self.root / "run.json")  # the live run settings
    dataset = property(lambda self: self.root / "dataset.json")
    marker = property(lambda self: self.root / MARKER)
    shards = property(lambda self: self.root / "shards")
    manifests = property(lambda self: self.root / "manifests")
    scratch = property(lambda self: self.root / "scratch")

    def make(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists():
            self.marker.write_text(f"dwm-data {__version__}\n")
        for sub in SUBDIRS:
            (self.root / sub).mkdir(exist_ok=True)

    def is_run(self) -> bool:
        return self.plan.exists() or self.marker.exists()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One driver per run folder: two at once would run the same tasks twice."""
        with open(self.root / "run.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise DwmDataError(f"another dwm-data process is running in {self.root}") from exc
            yield

    def has_driver(self) -> bool:
        """Whether a driver holds the lock now (it may be between units, with none in flight)."""
        try:
            handle = open(self.root / "run.lock")  # noqa: SIM115 - closed below, releasing the probe
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False

    def task_file(self, kind: str, task: int) -> Path:
        if kind == "empty":  # beside the manifests: the other record of finished units
            return self.manifests / f"{task:05d}.no-samples.jsonl"
        suffix = {
            "stats": ".json",
            "failures": ".jsonl",
            "deaths": ".jsonl",
            "logs": ".log",
            "running": ".json",
        }.get(kind, "")
        return self.root / kind / f"{task:05d}{suffix}"

    def unit_scratch(self, unit_id: str) -> Path:
        safe = hashlib.sha1(unit_id.encode()).hexdigest()[:16]
        return self.scratch / safe


def claim(folder: RunFolder, overwrite: bool) -> None:
    """Refuse a folder that holds anything but one of our runs; on `overwrite`, empty ours.

    A user's folder is never deleted nor written into, whatever the flags say.
    """
    root = folder.root
    if root.exists() and not root.is_dir():
        raise DwmDataError(f"{root} is a file, not a run folder; choose another output folder")
    if not root.exists() or not any(root.iterdir()):
        return
    if not folder.is_run():
        raise DwmDataError(
            f"{root} is not empty and is not a dwm-data run folder (no plan.json); "
            "nothing was changed: choose a new or empty output folder"
        )
    if overwrite:
        with folder.lock():  # never delete a run another driver is running
            pass
        shutil.rmtree(root)
