"""The shard store: WebDataset tar shards that hold whole work units, written atomically.

A shard is written under `<name>.tar.tmp` and renamed to `<name>.tar` only once it is complete,
so a killed run never leaves a truncated tar that a loader would read. Before the rename, a
manifest (`manifests/<name>.json`: units, keys, sizes) is written; a manifest whose tar never
appeared is discarded on resume. The manifests are how a re-run knows which units are done
without opening any tar, and they list exactly the shards that exist (no numbering gaps to guess).
Plain `webdataset.WebDataset(...)` reads the tars; our reader adds validation.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dwm_data.errors import DwmDataError, SampleError
from dwm_data.sample import Sample

TMP_SUFFIX = ".tmp"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A fresh sibling folder to write a result into, renamed to `out` (replacing an earlier
    one) when the block ends, removed when it raises: a failure leaves no half-written result
    and keeps the earlier one."""
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@dataclass
class ShardManifest:
    shard: str
    task: int
    units: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bytes: int = 0

    @classmethod
    def load(cls, path: Path) -> ShardManifest:
        return cls(**json.loads(path.read_text()))


class ShardWriter:
    """Appends whole units to `<name>-<task>-<n>.tar` shards, rolling at maxcount/maxsize.

    A unit's samples are never split across shards: when adding a unit would cross a limit, the
    open shard is closed first (a unit alone larger than the limits gets a shard of its own).
    """

    def __init__(
        self, shard_dir: Path, manifest_dir: Path, name: str, task: int, maxcount: int, maxsize: int
    ):
        self.shard_dir, self.manifest_dir = shard_dir, manifest_dir
        self.name, self.task = name, task
        self.maxcount, self.maxsize = maxcount, maxsize
        shard_dir.mkdir(parents=True, exist_ok=True)
        manifest_dir.mkdir(parents=True, exist_ok=True)
        self._next_index = 1 + max((i for i, _ in self.existing()), default=-1)
        self._tar: tarfile.TarFile | None = None
        self._manifest: ShardManifest | None = None

    def _stem(self, index: int) -> str:
        return f"{self.name}-{self.task:05d}-{index:05d}"

    def existing(self) -> list[tuple[int, ShardManifest]]:
        """Closed shards of this task, after discarding leftovers of a killed writer."""
        found = []
        prefix = f"{self.name}-{self.task:05d}-"
        for leftover in self.shard_dir.glob(f"{prefix}*.tar{TMP_SUFFIX}"):
            leftover.unlink()
        for manifest_path in sorted(self.manifest_dir.glob(f"{prefix}*.json")):
            tar_path = self.shard_dir / (manifest_path.stem + ".tar")
            if not tar_path.exists():
                manifest_path.unlink()  # killed between manifest and rename: the tar never landed
                continue
            found.append(
                (int(manifest_path.stem.rsplit("-", 1)[1]), ShardManifest.load(manifest_path))
            )
        return found

    @property
    def open_units(self) -> int:
        """Units written to the open shard: done, but not published until it closes."""
        return len(self._manifest.units) if self._manifest else 0

    def add_unit(self, unit_id: str, samples: list[Sample]) -> list[ShardManifest]:
        """Write one unit's samples; returns the manifests of shards closed on the way."""
        closed = []
        members = [sample.to_wds() for sample in samples]
        size = sum(
            len(v) for m in members for v in m.values() if isinstance(v, bytes)
        ) + 1536 * sum(len(m) for m in members)
        if (
            self._manifest is not None
            and self._manifest.keys
            and (
                len(self._manifest.keys) + len(samples) > self.maxcount
                or self._manifest.bytes + size > self.maxsize
            )
        ):
            closed.append(self.close())
        if not samples:
            return [c for c in closed if c]
        if self._tar is None:
            self._open()
        assert self._tar is not None and self._manifest is not None
        for sample_members in members:
            key = sample_members.pop("__key__")
            for ext, value in sample_members.items():
                data = value.encode("utf-8") if isinstance(value, str) else value
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mode, info.mtime = len(data), 0o444, 0
                self._tar.addfile(info, io.BytesIO(data))
            self._manifest.keys.append(key)
        self._manifest.units.append(unit_id)
        self._manifest.bytes = self._tar.fileobj.tell()
        return [c for c in closed if c]

    def _open(self) -> None:
        stem = self._stem(self._next_index)
        self._next_index += 1
        self._tar = tarfile.open(  # noqa: SIM115 - stays open across add_unit calls until close()
            self.shard_dir / f"{stem}.tar{TMP_SUFFIX}", "w", format=tarfile.GNU_FORMAT
        )
        self._manifest = ShardManifest(shard=f"{stem}.tar", task=self.task)

    def close(self) -> ShardManifest | None:
        """Finish the open shard: flush, fsync, manifest, then the rename that publishes it."""
        if self._tar is None or self._manifest is None:
            return None
        tmp_path = Path(self._tar.name)
        self._tar.close()
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        manifest = self._manifest
        manifest.bytes = tmp_path.stat().st_size
        write_json_atomic(
            self.manifest_dir / (tmp_path.name.removesuffix(".tar" + TMP_SUFFIX) + ".json"),
            manifest.__dict__,
        )
        os.replace(tmp_path, self.shard_dir / manifest.shard)
        self._tar, self._manifest = None, None
        return manifest


def shard_paths(spec: str | Path | Iterable[str | Path]) -> list[Path]:
    """Resolve a run folder, a folder of tars, a tar, or a glob to a sorted list of shard files."""
    if not isinstance(spec, str | Path):
        return [p for item in spec for p in shard_paths(item)]
    path = Path(spec)
    if path.is_dir():
        base = path / "shards" if (path / "shards").is_dir() else path
        paths = sorted(base.glob("*.tar"))
    elif path.is_file():
        paths = [path]
    else:
        paths = sorted(Path(p) for p in glob.glob(str(spec)))
    if not paths:
        raise DwmDataError(f"no shards found at {spec}")
    return paths


def iter_members(path: Path) -> Iterator[dict[str, bytes | str]]:
    """Group a tar's files into samples by key, as WebDataset does (key = name up to the first dot)."""
    current: dict[str, bytes | str] = {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, ext = info.name.partition(".")
            if current and current["__key__"] != key:
                yield current
                current = {}
            handle = tar.extractfile(info)
            assert handle is not None
            current.setdefault("__key__", key)
            current[ext] = handle.read()
    if current:
        yield current


def read_samples(
    spec: str | Path | Iterable[str | Path], validate: bool = True
) -> Iterator[Sample]:
    """Yield samples from shards; with `validate`, each is checked against the contract."""
    for path in shard_paths(spec):
        for members in iter_members(path):
            try:
                sample = Sample.from_wds(members)
            except (SampleError, ValueError, KeyError) as exc:
                raise SampleError(f"{path.name}: {exc}") from exc
            if validate:
                sample.validate()
            yield sample


def read_decoded(
    spec: str | Path | Iterable[str | Path],
) -> Iterator[tuple[Sample, dict[str, np.ndarray]]]:
    """Yield samples with their videos decoded (the three, and the optional ones a sample has),
    checking their alignment on the pixels."""
    from dwm_data.video import decode

    for sample in read_samples(spec, validate=False):
        frames = {name: decode(getattr(sample, name)) for name in sample.video_names}
        shapes = {name: f.shape for name, f in frames.items()}
        if len(set(shapes.values())) != 1:
            raise SampleError(f"{sample.key}: videos differ in shape {shapes}")
        yield sample, frames
