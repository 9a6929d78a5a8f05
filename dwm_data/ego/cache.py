"""What a restarted unit need not redo: its reconstruction and its splat.

Both cost minutes on a CPU and are kept in the unit's scratch folder (kept across restarts of
the unit, removed once it is done, as render-trumans keeps its frames). A file only appears
complete (written to a temporary name, then renamed), so a kill mid-write leaves nothing a re-run
would read. The same run has the same recipe and options, so what is cached is what the re-run
would compute again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.ego.sfm import Cameras
from dwm_data.ego.static import StaticScene

CAMERAS_FILE = "cameras.npz"
SPLAT_FILE = "splat.ply"
SPLAT_REPORT_FILE = "splat.json"


def cached_cameras(
    scratch: Path, make: Callable[[], Cameras], log: Callable[[str], None]
) -> Cameras:
    """The unit's cameras from `scratch`, or `make()` them now and keep them there."""
    path = scratch / CAMERAS_FILE
    if path.is_file():
        log(f"cameras from the unit's cache ({path.name}): structure from motion is not redone")
        return _load_cameras(path)
    cameras = make()
    _atomic(path, lambda tmp: _save_cameras(cameras, tmp))
    return cameras


def cached_splat(
    scratch: Path, make: Callable[[], StaticScene], log: Callable[[str], None]
) -> StaticScene:
    """The unit's fitted splat from `scratch`, or `make()` it now and keep it there."""
    from dwm_data.splat.ply import load_ply, save_ply

    ply, report = scratch / SPLAT_FILE, scratch / SPLAT_REPORT_FILE
    if ply.is_file() and report.is_file():
        log(f"splat from the unit's cache ({ply.name}): it is not fitted again")
        return StaticScene(load_ply(ply), json.loads(report.read_text()))
    scene = make()
    save_ply(scene.params, ply)  # written to a temporary name and renamed
    _atomic(report, lambda tmp: tmp.write_text(json.dumps(scene.report)))
    return scene


def _save_cameras(cameras: Cameras, path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(
            handle,
            intrinsics=np.array(
                [getattr(cameras.intrinsics, k) for k in ("fx", "fy", "cx", "cy")], np.float64
            ),
            size=np.array([cameras.intrinsics.width, cameras.intrinsics.height]),
            cam_to_world=cameras.cam_to_world,
            points=cameras.points,
            colors=cameras.colors,
            report=np.array(json.dumps(cameras.report)),
        )


def _load_cameras(path: Path) -> Cameras:
    with np.load(path) as data:
        width, height = (int(v) for v in data["size"])
        return Cameras(
            Intrinsics(*(float(v) for v in data["intrinsics"]), width, height),
            data["cam_to_world"],
            data["points"],
            data["colors"],
            json.loads(str(data["report"])),
        )


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
