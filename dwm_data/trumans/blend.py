"""The scene `.blend` in bpy: animation sets without the HSI add-on, the actor, object poses,
Cycles settings and one-frame renders.

Everything that touches Blender's version-dependent API lives here, so a new `bpy` breaks one
module: slotted actions (4.4+) need a slot assigned or the action silently does not animate.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import MissingAssetError, UnitError
from dwm_data.extras import require

HIDDEN_COLLECTION = "AugmentAreaCollection"  # hidden from render by the official scripts
ROOT_BONE = "CC_Base_Hip"


def import_bpy() -> Any:
    """`bpy`, also in a process spawned by one that had imported it: such a child inherits the
    paths bpy added (its `scripts/modules` holds a `bpy` package that then shadows the real one)."""
    if "bpy" not in sys.modules:
        sys.path[:] = [p for p in sys.path if f"{os.sep}bpy{os.sep}" not in p]
    return require("bpy", "render")


def open_blend(path: Path) -> Any:
    """Load a `.blend` as the current file and return its scene."""
    bpy = import_bpy()
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError(
            "TRUMANS scene .blend", str(path), "check the release root and scene name"
        )
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    except RuntimeError as exc:
        raise UnitError("blend-open", f"cannot open {path}: {exc}") from exc
    return bpy.context.scene


def read_animation_sets(scene: Any) -> dict[str, dict[str, str]]:
    """`scene.hsi_properties.animation_sets` read as ID properties: no add-on needed."""
    try:
        raw = scene["hsi_properties"]["animation_sets"]
    except KeyError as exc:
        raise UnitError(
            "animation-sets", f"scene '{scene.name}' has no hsi_properties.animation_sets"
        ) from exc
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UnitError(
            "animation-sets", f"scene '{scene.name}': animation_sets is not JSON ({exc})"
        ) from exc


def animation_sets(path: Path) -> dict[str, dict[str, str]]:
    """The animation sets of one scene file (opens it)."""
    return read_animation_sets(open_blend(path))


def find_armature(scene: Any) -> Any:
    """The CC armature: named in hsi_properties, else the armature that has `CC_Base_Hip`."""
    bpy = import_bpy()
    props = scene.get("hsi_properties")
    name = props.get("name_armature_CC") if props is not None else None
    if name and name in bpy.data.objects:
        return bpy.data.objects[name]
    for obj in scene.objects:
        if obj.type == "ARMATURE" and ROOT_BONE in obj.pose.bones:
            return obj
    raise UnitError("actor", f"scene '{scene.name}' has no CC armature (no pose bone {ROOT_BONE})")


def assign_action(obj: Any, action: Any) -> None:
    """What `HSI_OT_set_animation` does per object, plus the slot Blender 4.4+ may leave empty."""
    data = obj.animation_data or obj.animation_data_create()
    data.action = action
    if getattr(data, "action_slot", "absent") is None and len(getattr(action, "slots", ())):
        data.action_slot = action.slots[0]


@dataclass
class Recording:
    """A scene with one recording's animation set applied."""

    scene: Any
    armature: Any
    objects: list[str]  # the keyed scene objects of this recording (not the actor)
    first: int
    last: int


def apply_recording(scene: Any, recording: str) -> Recording | None:
    """Apply the animation set of `recording` and set the frame range like the add-on does.

    None for a set without an action for the actor: the official batch lists only the sets that
    name the armature, so such a set is skipped, not failed.
    """
    bpy = import_bpy()
    sets = read_animation_sets(scene)
    entry = sets.get(f"{recording}.pkl", sets.get(recording))
    if entry is None:
        raise UnitError("animation-sets", f"recording {recording} is not in scene '{scene.name}'")
    armature = find_armature(scene)
    if armature.name not in entry:
        return None
    for obj_name, action_name in entry.items():
        if obj_name not in bpy.data.objects or action_name not in bpy.data.actions:
            raise UnitError(
                "animation-sets", f"{recording}: missing object/action {obj_name}/{action_name}"
            )
        assign_action(bpy.data.objects[obj_name], bpy.data.actions[action_name])
    scene.frame_end = int(bpy.data.actions[entry[armature.name]].frame_range[1])
    if HIDDEN_COLLECTION in bpy.data.collections:
        bpy.data.collections[HIDDEN_COLLECTION].hide_render = True
    objects = sorted(name for name in entry if name != armature.name)
    return Recording(scene, armature, objects, int(scene.frame_start), int(scene.frame_end))


def actor_objects(armature: Any) -> list[Any]:
    """The armature, its children (recursively) and anything parented to one of its bones."""
    return [armature, *armature.children_recursive]


def set_hidden(objects: Iterable[Any], hidden: bool) -> None:
    for obj in objects:
        obj.hide_render = hidden


def object_poses(scene: Any, names: Sequence[str], frames: Sequence[int]) -> dict[str, np.ndarray]:
    """World matrices (len(frames), 4, 4) of the named objects, evaluated through Blender."""
    bpy = import_bpy()
    poses = {name: np.empty((len(frames), 4, 4)) for name in names}
    for row, frame in enumerate(frames):
        scene.frame_set(frame)
        for name in names:
            poses[name][row] = np.array(bpy.data.objects[name].matrix_world)
    return poses


def configure_cycles(
    scene: Any, width: int, height: int, samples: int, denoise: bool, threads: int
) -> str:
    """The official interaction settings; returns the device used (OptiX, CUDA, else CPU)."""
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


def to_matrix(array: np.ndarray) -> Any:
    """A (4, 4) numpy matrix as a `mathutils.Matrix` (what `matrix_world` takes)."""
    from mathutils import Matrix

    return Matrix([[float(x) for x in row] for row in array])


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
