"""`export-dwm`: shards -> the official folder layout and split lists, so the official trainer
reads our data as it reads the released data.

Where each source's samples go (dwm-recipe.md sections 9 and 14, the released real-world
examples), each folder holding `{videos,videos_static,videos_hands,prompts_rewrite}/<stem>.*`
(and `prompts/`, the raw caption, for samples written by `dwm-data caption` or imported with
one):

    trumans     trumans/ego_render_fov<fov>/<scene>/<recording>/   stem: the clip, 00000
    taste-rob   taste_rob/<SingleHand|DoubleHand>/<scene>/         stem: the clip id
    aria        realworld/realworld_dynamic/                       stem: <capture>_<clip, 00000>
    imported    the folder and stem it was imported from

Each sample is also named in a split list `<list>.txt` at the export root, in the official
lists' format (one `.../videos/<stem>.mp4` path relative to the root per line): the list it was
imported from (same order), else `<trumans|taste_rob|realworld>_<split>`.

The export is written beside the target and moved in place only when complete, so a failure
(two samples in one place, a sample from a source with no official place) leaves nothing
behind and overwrites nothing. A marker file tells our exports from other folders: only those
are replaced, and only when asked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dwm_data import __version__
from dwm_data.dwm_layout import OFFICIAL_ROOTS, SUBDIRS
from dwm_data.errors import DwmDataError
from dwm_data.sample import Sample
from dwm_data.store import read_samples

MARKER = ".dwm-export.json"


@dataclass(frozen=True)
class Place:
    """Where one sample goes: its folder (relative to the export root) and stem."""

    folder: str
    stem: str
    listing: str  # the split list naming it
    line: int | None = None  # its line in the list it was imported from

    @property
    def video(self) -> str:
        return Path(self.folder, SUBDIRS["video"], f"{self.stem}.mp4").as_posix()


def place(sample: Sample, split: str) -> Place:
    """The sample's place in the official layout; a clear error when its source has none."""
    meta = sample.meta
    source = meta.get("source", {})
    name = source.get("name")
    try:
        if name == "trumans":
            fov = f"{meta['render']['fov']:g}"
            folder = f"trumans/ego_render_fov{fov}/{source['scene']}/{source['recording']}"
            return Place(folder, f"{source['clip']:05d}", f"trumans_{split}")
        if name == "taste-rob":
            folder = f"taste_rob/{source['subset']}/{source['scene']}"
            return Place(folder, str(source["id"]), f"taste_rob_{split}")
        if name == "aria":
            stem = f"{source['capture']}_{source['clip']:05d}"
            return Place("realworld/realworld_dynamic", stem, f"realworld_{split}")
        if name == "dwm-layout":
            layout = meta["layout"]
            folder = Path(layout["dir"]).as_posix()
            top = folder.split("/")[0]
            listed = layout.get("list") or f"{top if top in OFFICIAL_ROOTS else 'dwm'}_{split}"
            return Place(folder, layout["stem"], listed, layout.get("line"))
    except KeyError as exc:
        raise DwmDataError(
            f"export-dwm: sample {sample.key} ({name}) lacks {exc} in its json"
        ) from exc
    raise DwmDataError(
        f"export-dwm: sample {sample.key} comes from '{name}', which has no place in the "
        "official layout (trumans, taste-rob, aria or imported dwm-layout samples)"
    )


def export_dwm(
    shards: str | Path | Iterable[str | Path],
    out: Path,
    split: str = "train",
    overwrite: bool = False,
) -> int:
    """Write every sample's videos and prompt, and the split lists; returns the sample count."""
    out = Path(out)
    _check_target(out, overwrite)
    staging = out.parent / f".{out.name}.export-tmp"
    shutil.rmtree(staging, ignore_errors=True)  # a killed export's leftovers
    try:
        places = _write_samples(read_samples(shards), staging, split)
        lists = _write_lists(places, staging)
        marker = {"tool": f"dwm-data {__version__}", "samples": len(places), "lists": lists}
        (staging / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(places)


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
        raise DwmDataError(
            f"export-dwm: {out} is not empty and not an export; choose another folder"
        )
    if (out / MARKER).is_file() and not overwrite:
        raise DwmDataError(
            f"export-dwm: {out} holds an earlier export; pass --overwrite to replace it"
        )


def _write_samples(samples: Iterable[Sample], root: Path, split: str) -> dict[str, Place]:
    """Write each sample's files; returns the places by key. Two samples in one place fail."""
    places: dict[str, Place] = {}
    taken: dict[str, str] = {}
    for sample in samples:
        where = place(sample, split)
        if where.video in taken:
            raise DwmDataError(
                f"export-dwm: samples {taken[where.video]} and {sample.key} both go to "
                f"{where.video}; nothing was written"
            )
        taken[where.video], places[sample.key] = sample.key, where
        base = root / where.folder
        files = {
            base / sub / f"{where.stem}.mp4": getattr(sample, name) for name, sub in SUBDIRS.items()
        }
        files[base / "prompts_rewrite" / f"{where.stem}.txt"] = sample.prompt.encode("utf-8")
        raw = sample.meta.get("caption", {}).get("raw")  # before the rewrite
        if raw is not None:
            files[base / "prompts" / f"{where.stem}.txt"] = raw.encode("utf-8")
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    if not places:
        raise DwmDataError("export-dwm: the shards hold no samples")
    return places


def _write_lists(places: dict[str, Place], root: Path) -> dict[str, int]:
    """`<list>.txt` per split list: imported entries in their list's order, then the rest by path."""
    lists: dict[str, list[Place]] = {}
    for where in places.values():
        lists.setdefault(where.listing, []).append(where)
    for name, entries in lists.items():
        entries.sort(key=lambda p: (p.line is None, p.line or 0, p.video))
        (root / f"{name}.txt").write_text("".join(f"{p.video}\n" for p in entries))
    return {f"{name}.txt": len(entries) for name, entries in sorted(lists.items())}


def _replace(staging: Path, out: Path) -> None:
    """Move the finished export in place; an earlier export of ours goes only once it is there."""
    old = out.parent / f".{out.name}.export-old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
