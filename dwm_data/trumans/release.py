"""The TRUMANS release layout and the choice of recordings to render.

Layout (the `jnnan/trumans_utils` README): `Recordings_blend/<scene>/<scene>.blend` holds the
scene and the animation sets of its recordings, `Actions/<rec>.txt` (or `Action/`) the
annotations, `smplx_result/<rec>_smplx_results.pkl` the SMPL-X fits. A recording is only known
inside its scene's `.blend`, so listing recordings without a split file opens those files.

A scene is named after the folder that holds its `.blend`, found by walking `Recordings_blend/`,
as the official batch does: five scene folders of the official split end in `-copy`, and the file
inside need not carry the folder's name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dwm_data.errors import MissingAssetError, UnitError

LICENSE = "TRUMANS (research only, jnnan/trumans_utils; access via the authors' form)"


@dataclass(frozen=True, order=True)
class Recording:
    scene: str
    name: str  # e.g. 2023-01-17@00-33-01 (the animation set key without ".pkl")

    def blend(self, root: Path) -> Path:
        paths = scene_files(root).get(self.scene, [])
        if len(paths) != 1:
            found = ", ".join(str(p) for p in paths) or "none"
            raise UnitError(
                "blend-open",
                f"want one .blend in a folder named '{self.scene}' under {blends_folder(root)}, "
                f"found {found}",
            )
        return paths[0]


@dataclass(frozen=True)
class Action:
    start: int
    end: int
    text: str


def blends_folder(root: Path) -> Path:
    return Path(root) / "Recordings_blend"


def scene_files(root: Path) -> dict[str, list[Path]]:
    """Scene name (the folder holding the file) -> the `.blend` files there, from a walk of
    `Recordings_blend/`; Blender's backups (`.blend1`) are not scenes. A scene with two files
    fails its own units only."""
    folder = blends_folder(root)
    if not folder.is_dir():
        raise MissingAssetError(
            "TRUMANS Recordings_blend/", str(folder), "download TRUMANS and pass its root folder"
        )
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.blend")):
        if path.is_file():
            found.setdefault(path.parent.name, []).append(path)
    return found


def scenes(root: Path) -> list[str]:
    return sorted(scene_files(root))


def from_split(lines: Iterable[str]) -> list[Recording]:
    """Recordings named by an official split list (`trumans/ego_render_fov90/<scene>/<rec>/...`)."""
    found: dict[tuple[str, str], None] = {}
    for line in lines:
        parts = line.strip().split("/")
        if len(parts) >= 4 and parts[-2] == "videos":
            found[(parts[-4], parts[-3])] = None
    return [Recording(scene, name) for scene, name in found]


def select(
    root: Path,
    scene_names: Iterable[str] = (),
    recording_names: Iterable[str] = (),
    split: Path | None = None,
) -> list[Recording]:
    """The recordings to render: from a split file, or every animation set of the chosen scenes;
    then narrowed to `recording_names` if given. Sorted, so plans are deterministic."""
    from dwm_data.trumans.blend import animation_sets

    wanted_scenes = set(scene_names)
    if split is not None:
        chosen = from_split(Path(split).read_text().splitlines())
        chosen = [r for r in chosen if not wanted_scenes or r.scene in wanted_scenes]
    else:
        chosen = [
            Recording(scene, name.removesuffix(".pkl"))
            for scene in scenes(root)
            if not wanted_scenes or scene in wanted_scenes
            for name in animation_sets(Recording(scene, "").blend(root))
        ]
    wanted = set(recording_names)
    return sorted(r for r in chosen if not wanted or r.name in wanted)


def read_actions(root: Path, recording: str) -> list[Action]:
    """`Actions/<rec>.txt` lines `start<TAB>end<TAB>text`; none when the file is absent."""
    for folder in ("Actions", "Action"):
        path = Path(root) / folder / f"{recording}.txt"
        if path.is_file():
            break
    else:
        return []
    actions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split(maxsplit=2)
        try:
            actions.append(Action(int(float(parts[0])), int(float(parts[1])), parts[2].strip()))
        except (IndexError, ValueError) as exc:
            raise UnitError("actions", f"{path}:{number}: expected start, end, text") from exc
    return actions


def prompt(actions: Iterable[Action], first: int, last: int) -> str:
    """The annotations overlapping source frames first..last, in order, without repeats."""
    texts: list[str] = []
    for action in sorted(actions, key=lambda a: a.start):
        if action.start <= last and action.end >= first and action.text not in texts:
            texts.append(action.text)
    return ". ".join(t.rstrip(".") for t in texts) + ("." if texts else "")


def smplx_result_path(root: Path, recording: str) -> Path:
    return Path(root) / "smplx_result" / f"{recording}_smplx_results.pkl"
