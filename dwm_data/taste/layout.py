"""Where real fixed-camera clips come from: the TASTE-Rob release, a split list, a plain folder.

TASTE-Rob unzips to `SingleHand|DoubleHand/<Scene>[_<a>_to_<b>]/<id>.mp4` with captions in one
`captions.xlsx`; DWM's split lists name the processed layout
(`taste_rob/DoubleHand/<Scene>/videos/<id>.mp4`), which maps back to the same raw clip. Any
other folder of video clips (`VIDEO_SUFFIXES`) is taken as is, with optional `<stem>.txt`
prompts beside the clips.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from dwm_data.errors import DwmDataError

SUBSETS = ("SingleHand", "DoubleHand")
TASTE_LICENSE = "CC BY-NC 4.0"
_RANGE_SUFFIX = re.compile(r"_\d+_to_\d+$")


@dataclass(frozen=True)
class Clip:
    """One clip to turn into a triplet. `subset`/`scene`/`clip_id` are set for TASTE-Rob clips."""

    path: str
    key_parts: tuple[str, ...]
    subset: str | None = None
    scene: str | None = None  # the folder name, with any id-range suffix
    clip_id: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Clip:
        return cls(**{**data, "key_parts": tuple(data["key_parts"])})

    @property
    def is_taste(self) -> bool:
        return self.subset is not None


def scene_name(folder: str) -> str:
    """`Office_55670_to_57854` -> `Office`: the scene without the id-range suffix."""
    return _RANGE_SUFFIX.sub("", folder)


def is_taste_root(root: Path) -> bool:
    return any((root / subset).is_dir() for subset in SUBSETS)


def taste_clip(path: Path, subset: str, scene: str) -> Clip:
    return Clip(str(path), (subset, scene_name(scene), path.stem), subset, scene, path.stem)


# Containers cameras and phones write, all read by PyAV; matched in any case (.MOV, .MP4).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


def find_clips(source: Path, data_root: Path | None = None) -> list[Clip]:
    """The clips of a TASTE-Rob root, a split list file or a plain folder, in a stable order."""
    if source.is_file():
        return _from_list(source, data_root or source.parent)
    if not source.is_dir():
        raise DwmDataError(f"build-taste: {source} is neither a folder nor a list file")
    if is_taste_root(source):
        clips = [
            taste_clip(path, subset, path.parent.name)
            for subset in SUBSETS
            for path in sorted((source / subset).glob("*/*.mp4"))
        ]
    else:
        clips = [
            Clip(str(path), tuple(path.relative_to(source).with_suffix("").parts))
            for path in sorted(source.rglob("*"))
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()
        ]
    if not clips:
        raise DwmDataError(
            f"build-taste: no video clips ({', '.join(VIDEO_SUFFIXES)}) under {source}"
        )
    return clips


def _from_list(listing: Path, root: Path) -> list[Clip]:
    """A split list: TASTE-Rob entries resolve to raw clips under `root` (unit fails later when
    the file is missing, so one absent clip does not stop the run); others are paths."""
    clips = []
    for line in listing.read_text().splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = Path(entry).parts
        subset = next((p for p in parts if p in SUBSETS), None)
        if subset is None:
            path = root / entry
            clips.append(Clip(str(path), tuple(Path(entry).with_suffix("").parts)))
            continue
        scene = parts[parts.index(subset) + 1]
        clip_id = Path(entry).stem
        clips.append(taste_clip(_raw_clip(root, entry, subset, scene, clip_id), subset, scene))
    if not clips:
        raise DwmDataError(f"build-taste: {listing} lists no clips")
    return clips


def _raw_clip(root: Path, entry: str, subset: str, scene: str, clip_id: str) -> Path:
    """The first existing of: the raw release path, the scene merged by prefix, the entry as
    written (a processed layout); the raw path when none exists, for the failure message."""
    candidates = [
        root / subset / scene / f"{clip_id}.mp4",
        root / subset / scene.split("_")[0] / f"{clip_id}.mp4",
        root / entry,
        root / Path(*Path(entry).parts[1:]),  # lists start with the dataset folder (taste_rob/)
    ]
    return next((c for c in candidates if c.is_file()), candidates[0])
