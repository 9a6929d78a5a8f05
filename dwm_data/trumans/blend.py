"""The TRUMANS scene `.blend` in bpy: animation sets read without the HSI add-on, the actor and
a recording applied as the add-on applies it.

Everything that touches Blender's version-dependent API lives in two modules, so a new `bpy`
breaks only them: what any scene needs (opening, Cycles, stills, cameras) is in
`dwm_data.blender`; what a TRUMANS recording needs is here: slotted actions (4.4+) need a slot
assigned or the action silently does not animate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwm_data import blender
from dwm_data.errors import UnitError

HIDDEN_COLLECTION = "AugmentAreaCollection"  # hidden from render by the official scripts
ROOT_BONE = "CC_Base_Hip"


def open_scene(path: Path) -> Any:
    """Open a release's scene file (every TRUMANS reader goes through here, so a missing one
    always says to check the release root and scene name)."""
    return blender.open_blend(path, "TRUMANS scene .blend", "check the release root and scene name")


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
    return read_animation_sets(open_scene(path))


def find_armature(scene: Any) -> Any:
    """The CC armature: named in hsi_properties, else the armature that has `CC_Base_Hip`."""
    bpy = blender.import_bpy()
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
    bpy = blender.import_bpy()
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
