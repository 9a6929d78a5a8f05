"""Blender (bpy and Cycles) for any `.blend`: opening it, the Cycles settings, one-frame renders,
cameras and matrices.

`render-trumans` and `simulate`'s `.blend` scenes render through these, so both get the same
Cycles settings and the same GPU choice. Everything that touches Blender's version-dependent API
lives in two modules, so a new `bpy` breaks only them: what any scene needs is here (Blender 5
holds the compositor in `compositing_node_group`, 4.x switches it with `use_nodes`); what a
TRUMANS recording needs (animation sets, slotted actions) is in `dwm_data.trumans.blend`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics, blender_to_opencv
from dwm_data.errors import MissingAssetError, UnitError
from dwm_data.extras import require


def import_bpy() -> Any:
    """`bpy`, also in a process spawned by one that had imported it: such a child inherits the
    paths bpy added (its `scripts/modules` holds a `bpy` package that then shadows the real one)."""
    if "bpy" not in sys.modules:
        sys.path[:] = [p for p in sys.path if f"{os.sep}bpy{os.sep}" not in p]
    return require("bpy", "render")


def open_blend(path: Path, what: str, how: str) -> Any:
    """Load a `.blend` as the current file and return its scene; a missing file is the caller's
    one-line MissingAssetError (`what` the file is, `how` to get it right)."""
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError(what, str(path), how)
    bpy = import_bpy()
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as exc:
        raise UnitError("blend-open", f"cannot open {path}: {exc}") from exc
    return bpy.context.scene


def configure_cycles(
    scene: Any, width: int, height: int, samples: int, denoise: bool, threads: int
) -> str:
    """The official TRUMANS interaction settings; returns the device used (OptiX, CUDA, else
    CPU)."""
    bpy = import_bpy()
    scene.render.engine = "CYCLES"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.use_motion_blur = False
    scene.render.use_persistent_data = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    if threads > 0:
        scene.render.threads_mode, scene.render.threads = "FIXED", threads
    cycles = scene.cycles
    cycles.samples = samples
    cycles.seed, cycles.use_animated_seed = 0, False  # same noise in every pass: fair comparisons
    device = _gpu_device(bpy)
    cycles.device = "GPU" if device != "CPU" else "CPU"
    cycles.use_denoising = denoise
    if denoise:
        cycles.denoiser = "OPTIX" if device == "OPTIX" else "OPENIMAGEDENOISE"
    return device


def _gpu_device(bpy: Any) -> str:
    """OptiX, else CUDA, on the GPUs this worker may use (Cycles lists only those in
    CUDA_VISIBLE_DEVICES, which the executor narrows to the task's), else the CPU, loudly: a
    cluster task that meant to render on its GPU must not quietly take hours on the CPU."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for kind in ("OPTIX", "CUDA"):
        try:
            prefs.compute_device_type = kind
            prefs.get_devices()
        except (TypeError, ValueError):
            continue
        usable = [d for d in prefs.devices if d.type == kind]
        if usable:
            for d in prefs.devices:
                d.use = d.type == kind
            return kind
    logging.getLogger(__name__).warning(
        "Cycles found no OptiX or CUDA device (CUDA_VISIBLE_DEVICES=%r); rendering on the CPU",
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
    return "CPU"


def render_still(scene: Any, path: Path, compositing: bool) -> None:
    """Render the current frame to a PNG at `path`, through the scene's compositor or not: the
    official interaction pass turns it off (`scene.use_nodes = False`), the static pass leaves it
    as the file has it."""
    bpy = import_bpy()
    scene.render.filepath = str(path)
    scene.render.use_compositing = compositing
    with _quiet_stdout():
        bpy.ops.render.render(write_still=True)
    if not Path(path).is_file():
        raise UnitError("render", f"Cycles wrote no image for frame {scene.frame_current}")


def compositing(scene: Any) -> bool:
    """Whether the file's own settings send renders through its compositor (Blender 5 holds the
    tree in `compositing_node_group`; 4.x switches it with `use_nodes`)."""
    if hasattr(scene, "compositing_node_group"):
        tree_on = scene.compositing_node_group is not None
    else:
        tree_on = scene.use_nodes
    return bool(tree_on and scene.render.use_compositing)


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Blender prints every render step to the C-level stdout, which would flood worker logs."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def new_camera(scene: Any, intrinsics: Intrinsics, name: str) -> Any:
    """A camera whose horizontal field of view matches `intrinsics` at any aspect ratio."""
    bpy = import_bpy()
    data = bpy.data.cameras.new(name)
    data.lens_unit = "FOV"
    data.sensor_fit = "HORIZONTAL"  # AUTO would switch to vertical for portrait sizes
    data.angle = 2 * math.atan(intrinsics.width / (2 * intrinsics.fx))
    camera = bpy.data.objects.new(name, data)
    scene.collection.objects.link(camera)
    camera.rotation_mode = "QUATERNION"
    return camera


def camera_to_world(camera: Any) -> np.ndarray:
    """The evaluated camera pose as an OpenCV camera-to-world matrix (Blender world, metres)."""
    return blender_to_opencv(np.array(camera.matrix_world, dtype=np.float64))


def to_matrix(array: np.ndarray) -> Any:
    """A (4, 4) numpy matrix as a `mathutils.Matrix` (what `matrix_world` takes)."""
    from mathutils import Matrix

    return Matrix([[float(x) for x in row] for row in array])


def object_poses(scene: Any, names: Sequence[str], frames: Sequence[int]) -> dict[str, np.ndarray]:
    """World matrices (len(frames), 4, 4) of the named objects, evaluated through Blender."""
    bpy = import_bpy()
    poses = {name: np.empty((len(frames), 4, 4)) for name in names}
    for row, frame in enumerate(frames):
        scene.frame_set(frame)
        for name in names:
            poses[name][row] = np.array(bpy.data.objects[name].matrix_world)
    return poses


def set_hidden(objects: Iterable[Any], hidden: bool) -> None:
    for obj in objects:
        obj.hide_render = hidden
