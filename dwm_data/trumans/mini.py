"""A TRUMANS-format mini release written with bpy, for the tests, the demo and the benchmark.

The real release is licensed and large, so everything that reads it is exercised on this: one
scene `.blend` in the release layout (a small room, a cabinet whose drawer is a separate keyed
object, a rigged avatar whose bones, meshes and vertex groups carry the CC4 names, and the
animation sets stored as ID properties like the HSI add-on does), the `Actions/<rec>.txt`
annotations, `smplx_result/<rec>_smplx_results.pkl` fits (y-up, empty gender and betas, flat
hands), and a stand-in SMPL-X model file with the 13 keys `smplx` needs and random-but-valid
content. The avatar's hands carry an emissive material of their own (`HAND_EMISSION`) so a test
can find their silhouette in a Cycles render.

It also carries the release's traps: a `-copy` scene folder whose `.blend` has another name,
`hsi_properties` written through a registered property group (the add-on's way), an armature
named like the release's, forearm twist bones keyed in Euler `YXZ` (the add-on's `restore.py`)
and a hand scale set but not keyed, several meshes deformed by the armature, the drawer parented
to an empty, `frame_step = 2`, the compositor left on (it paints `COMPOSITOR_BOX` magenta), and
an animation set without the armature (the official batch skips it).
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCENE = "0000mini-trumans-scene-copy"  # the folder; the file inside keeps the original name
BLEND_NAME = "0000mini-trumans-scene.blend"
RECORDINGS = ("2023-01-01@00-00-00", "2023-01-01@00-10-00")
NO_ACTOR_SET = "2023-01-01@00-20-00"  # an animation set that only moves the drawer
ARMATURE = "zzy3"  # the name of the CC armature in the release's files
DRAWER = "cabinet_drawer_01"
DRAWER_ROOT = "cabinet_drawer_01_root"  # the empty the drawer is keyed under
TWIST_BONES = ("CC_Base_L_ForearmTwist02", "CC_Base_R_ForearmTwist02")
TWIST_MODE = "YXZ"  # the add-on leaves these in Euler and keys their Y rotation
TWIST_DEGREES = 80.0  # peak twist about the forearm
HAND_SCALE = 1.3  # set on the hand bones, never keyed, as restore.py's hand_scale
COMPOSITOR_BOX = (0.1, 0.9, 0.16, 0.16)  # centre x, y (from the bottom), width, height; relative
HAND_EMISSION = (0.0, 0.0, 1.0)  # pure blue: no other surface in the mini scene is blue
DRAWER_OPENS = (40, 70)  # source frames over which the drawer of the first recording opens
FINGERS = ("Thumb", "Index", "Mid", "Ring", "Pinky")

# bone -> (parent, head, tail, box half-width); Blender z-up, the avatar faces -Y, its left is +X
_TRUNK = {
    "CC_Base_Hip": (None, (0, 0, 0.95), (0, 0, 1.05), 0.12),
    "CC_Base_Spine01": ("CC_Base_Hip", (0, 0, 1.05), (0, 0, 1.30), 0.13),
    "CC_Base_Spine02": ("CC_Base_Spine01", (0, 0, 1.30), (0, 0, 1.45), 0.12),
    "CC_Base_NeckTwist01": ("CC_Base_Spine02", (0, 0, 1.45), (0, 0, 1.55), 0.04),
    "CC_Base_Head": ("CC_Base_NeckTwist01", (0, 0, 1.55), (0, 0, 1.74), 0.07),
    "CC_Base_FacialBone": ("CC_Base_Head", (0, -0.02, 1.62), (0, -0.07, 1.62), 0.0),
}


def _arm_bones(side: str, sign: float) -> dict[str, tuple]:
    s = sign
    bones = {
        f"CC_Base_{side}_Clavicle": (
            "CC_Base_Spine02",
            (0.02 * s, 0, 1.42),
            (0.18 * s, 0, 1.42),
            0.0,
        ),
        f"CC_Base_{side}_Upperarm": (
            f"CC_Base_{side}_Clavicle",
            (0.18 * s, 0, 1.42),
            (0.20 * s, -0.10, 1.17),
            0.035,
        ),
        f"CC_Base_{side}_Forearm": (
            f"CC_Base_{side}_Upperarm",
            (0.20 * s, -0.10, 1.17),
            (0.14 * s, -0.36, 1.22),
            0.03,
        ),
        f"CC_Base_{side}_Hand": (
            f"CC_Base_{side}_Forearm",
            (0.14 * s, -0.36, 1.22),
            (0.13 * s, -0.44, 1.22),
            0.035,
        ),
        f"CC_Base_{side}_ForearmTwist02": (
            f"CC_Base_{side}_Forearm",
            (0.17 * s, -0.23, 1.195),
            (0.14 * s, -0.36, 1.22),
            0.0,
        ),
    }
    for k, finger in enumerate(FINGERS):
        x = (0.13 + (0.045 if k == 0 else 0.03 - 0.02 * (k - 1))) * s
        start = np.array((x, -0.44 + (0.04 if k == 0 else 0.0), 1.22))
        parent = f"CC_Base_{side}_Hand"
        for seg in (1, 2, 3):
            end = start + np.array((0.0, -0.025, 0.0))
            name = f"CC_Base_{side}_{finger}{seg}"
            bones[name] = (parent, tuple(start), tuple(end), 0.009)
            parent, start = name, end
    return bones


BONES = {**_TRUNK, **_arm_bones("L", 1.0), **_arm_bones("R", -1.0)}


@dataclass(frozen=True)
class MiniRelease:
    root: Path
    scene: str
    recordings: tuple[str, ...]

    @property
    def blend(self) -> Path:
        return self.root / "Recordings_blend" / self.scene / BLEND_NAME


def write_release(root: Path, frames: int = 100) -> MiniRelease:
    """Write the mini release under `root`: two recordings of `frames` source frames each.

    The first recording opens the drawer; in the second nothing but the avatar moves, so the
    `interaction` clip policy keeps none of its windows. A third animation set has no actor.
    """
    from dwm_data.trumans.blend import import_bpy

    bpy = import_bpy()
    root = Path(root)
    release = MiniRelease(root, SCENE, RECORDINGS)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 30
    scene.view_settings.view_transform = "Standard"  # keep the hands' emission colour exact
    scene.frame_step = 2  # a file setting the official clip schedule must not follow
    _build_room(bpy)
    _build_compositor(scene)
    drawer = _build_cabinet(bpy)
    armature = _build_avatar(bpy)
    sets = {}
    for index, rec in enumerate(RECORDINGS):
        body_action = _key_avatar(bpy, armature, rec, frames, index)
        drawer_action = _key_drawer(bpy, drawer, rec, frames, opens=index == 0)
        sets[f"{rec}.pkl"] = {DRAWER: drawer_action.name, armature.name: body_action.name}
    no_actor = _key_drawer(bpy, drawer, NO_ACTOR_SET, frames, opens=False)
    sets[f"{NO_ACTOR_SET}.pkl"] = {DRAWER: no_actor.name}
    first = sets[f"{RECORDINGS[0]}.pkl"]
    armature.animation_data.action = bpy.data.actions[first[armature.name]]
    drawer.animation_data.action = bpy.data.actions[first[DRAWER]]
    for side in ("L", "R"):  # restore.py scales the hands once, after keying
        armature.pose.bones[f"CC_Base_{side}_Hand"].scale = (HAND_SCALE,) * 3
    scene.frame_start, scene.frame_end = 0, frames - 1
    _write_hsi_properties(bpy, scene, json.dumps(sets), armature.name)
    release.blend.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(release.blend), compress=False)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for index, rec in enumerate(RECORDINGS):
        _write_actions(root, rec, frames, index)
        _write_smplx_result(root, rec, frames)
    return release


def _write_hsi_properties(bpy, scene, animation_sets: str, armature: str) -> None:
    """Store the sets the add-on's way: through a registered property group (only the values set
    are written to the file), unregistered before saving so nothing else can depend on it."""
    fields = {  # built, not declared: this module's annotations are strings, bpy needs objects
        "animation_sets": bpy.props.StringProperty(default="{}"),
        "name_armature_CC": bpy.props.StringProperty(default=""),
        "current_animation_index_display": bpy.props.IntProperty(default=0),
        "recording_fps": bpy.props.FloatProperty(default=30.0),
    }
    HSIProperties = type("HSIProperties", (bpy.types.PropertyGroup,), {"__annotations__": fields})
    bpy.utils.register_class(HSIProperties)
    bpy.types.Scene.hsi_properties = bpy.props.PointerProperty(type=HSIProperties)
    try:
        scene.hsi_properties.animation_sets = animation_sets
        scene.hsi_properties.name_armature_CC = armature
    finally:
        del bpy.types.Scene.hsi_properties
        bpy.utils.unregister_class(HSIProperties)


def _build_compositor(scene) -> None:
    """A compositor left on, with a visible effect: a magenta box in the top-left corner."""
    scene.use_nodes = True
    tree = scene.node_tree
    tree.nodes.clear()
    layers = tree.nodes.new("CompositorNodeRLayers")
    box = tree.nodes.new("CompositorNodeBoxMask")
    box.x, box.y, box.width, box.height = COMPOSITOR_BOX
    mix = tree.nodes.new("CompositorNodeMixRGB")
    mix.inputs[2].default_value = (1.0, 0.0, 1.0, 1.0)
    out = tree.nodes.new("CompositorNodeComposite")
    tree.links.new(box.outputs["Mask"], mix.inputs[0])
    tree.links.new(layers.outputs["Image"], mix.inputs[1])
    tree.links.new(mix.outputs["Image"], out.inputs["Image"])


def _material(bpy, name: str, color: tuple[float, float, float], emission: bool = False):
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes = material.node_tree.nodes
    if emission:
        nodes.clear()
        out = nodes.new("ShaderNodeOutputMaterial")
        emit = nodes.new("ShaderNodeEmission")
        emit.inputs["Color"].default_value = (*color, 1.0)
        material.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
        # Not a light source: hiding the actor must not change how Cycles samples the lights,
        # or the static pass's noise would differ from the interaction pass everywhere.
        material.cycles.emission_sampling = "NONE"
    else:
        nodes["Principled BSDF"].inputs["Base Color"].default_value = (*color, 1.0)
        nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.8
    return material


def _box(bpy, name: str, lo: tuple, hi: tuple, material, collection=None):
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    verts = [(x, y, z) for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


def _build_room(bpy) -> None:
    scene = bpy.context.scene
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.6, 0.6, 0.6, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world
    _box(bpy, "floor", (-2, -2.5, -0.02), (2, 1.5, 0), _material(bpy, "floor", (0.5, 0.45, 0.35)))
    _box(bpy, "wall_back", (-2, -2.6, 0), (2, -2.5, 2.6), _material(bpy, "wall", (0.8, 0.8, 0.7)))
    _box(bpy, "wall_left", (2, -2.5, 0), (2.1, 1.5, 2.6), bpy.data.materials["wall"])
    _box(bpy, "wall_right", (-2.1, -2.5, 0), (-2, 1.5, 2.6), bpy.data.materials["wall"])
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy = 3.0
    sun_obj = bpy.data.objects.new("sun", sun)
    sun_obj.rotation_euler = (math.radians(20), math.radians(10), 0)
    scene.collection.objects.link(sun_obj)
    # The official scripts hide this collection; the mini scene has one so that path is exercised.
    augment = bpy.data.collections.new("AugmentAreaCollection")
    scene.collection.children.link(augment)
    _box(
        bpy,
        "augment_area",
        (-0.3, -0.6, 1.3),
        (0.3, -0.5, 1.9),
        bpy.data.materials["floor"],
        augment,
    )


def _build_cabinet(bpy):
    wood = _material(bpy, "cabinet", (0.55, 0.3, 0.15))
    _box(bpy, "cabinet_body_01", (-0.4, -1.25, 0), (0.4, -0.75, 0.78), wood)
    _box(bpy, "cabinet_top_01", (-0.4, -1.25, 0.95), (0.4, -0.75, 1.0), wood)
    # The drawer is keyed in the frame of an empty turned a quarter about z: its local +x is the
    # world's +y, the way it slides out towards the avatar.
    root = bpy.data.objects.new(DRAWER_ROOT, None)
    bpy.context.scene.collection.objects.link(root)
    root.location = (0, -0.75, 0.865)
    root.rotation_euler = (0, 0, math.pi / 2)
    drawer = _box(
        bpy,
        DRAWER,
        (-0.4, -0.3, -0.075),
        (0.02, 0.3, 0.075),
        _material(bpy, "drawer", (0.9, 0.6, 0.1)),
    )
    drawer.parent = root
    drawer.rotation_mode = "QUATERNION"
    return drawer


def _build_avatar(bpy):
    scene = bpy.context.scene
    arm_data = bpy.data.armatures.new("CC_Base_Armature")
    armature = bpy.data.objects.new(ARMATURE, arm_data)
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for name, (parent, head, tail, _) in BONES.items():
        bone = arm_data.edit_bones.new(name)
        bone.head, bone.tail = head, tail
        bone.roll = 0.0
        if parent:
            bone.parent = arm_data.edit_bones[parent]
            bone.use_connect = False
    bpy.ops.object.mode_set(mode="OBJECT")
    skin, hands = (
        _material(bpy, "skin", (0.8, 0.6, 0.5)),
        _material(bpy, "hands", HAND_EMISSION, True),
    )
    verts, faces, groups, mats = [], [], [], []
    for name, (_, head, tail, width) in BONES.items():
        if width <= 0:
            continue
        start = len(verts)
        head, tail = np.array(head), np.array(tail)
        if name.endswith("_Forearm"):  # stop short of the hand: no skin in front of the wrist
            tail = head + 0.75 * (tail - head)
        verts += _bone_box(head, tail, width)
        faces += [tuple(start + i for i in f) for f in _BOX_FACES]
        if name.endswith("_Hand"):  # the wrist end shares its weight with the twist bone
            twist = name.replace("_Hand", "_ForearmTwist02")
            groups += [
                (name, range(start + 4, start + 8), 1.0),
                (name, range(start, start + 4), 0.5),
            ]
            groups.append((twist, range(start, start + 4), 0.5))
        else:
            groups.append((name, range(start, start + 8), 1.0))
        mats += [1 if _is_hand(name) else 0] * 6
    body = _skinned_mesh(bpy, "CC_Base_Body", verts, faces, groups, armature, [skin, hands])
    body.data.polygons.foreach_set("material_index", mats)
    teeth_verts, teeth_faces = _sphere((0, -0.03, 1.6), 0.015)  # one more deformed mesh
    _skinned_mesh(
        bpy,
        "CC_Base_Teeth",
        teeth_verts,
        teeth_faces,
        [("CC_Base_Head", range(len(teeth_verts)), 1.0)],
        armature,
        [_material(bpy, "teeth", (0.95, 0.95, 0.9))],
    )
    eye_verts, eye_faces = [], []
    for x in (0.032, -0.032):
        v, f = _sphere((x, -0.065, 1.65), 0.012)
        eye_faces += [tuple(len(eye_verts) + i for i in face) for face in f]
        eye_verts += v
    eye_mat = _material(bpy, "eye", (0.95, 0.95, 0.95))
    _skinned_mesh(
        bpy,
        "CC_Base_Eye",
        eye_verts,
        eye_faces,
        [("CC_Base_Head", range(len(eye_verts)), 1.0)],
        armature,
        [eye_mat],
    )
    return armature


_BOX_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _is_hand(bone: str) -> bool:
    return bone.endswith("_Hand") or any(f"_{finger}" in bone for finger in FINGERS)


def _bone_box(head: np.ndarray, tail: np.ndarray, width: float) -> list[tuple]:
    axis = (tail - head) / np.linalg.norm(tail - head)
    helper = np.array((0, 0, 1.0)) if abs(axis[2]) < 0.9 else np.array((1.0, 0, 0))
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    flat = 0.45 if width < 0.04 else 1.0  # hands and fingers are flatter than they are wide
    return [
        tuple(p + a * width * u + b * width * flat * v)
        for p in (head, tail)
        for a in (-1, 1)
        for b in (-1, 1)
    ]


def _sphere(center: tuple, radius: float, rings: int = 6, segments: int = 8) -> tuple[list, list]:
    verts = [(center[0], center[1], center[2] + radius)]
    for i in range(1, rings):
        theta = math.pi * i / rings
        for j in range(segments):
            phi = 2 * math.pi * j / segments
            verts.append(
                (
                    center[0] + radius * math.sin(theta) * math.cos(phi),
                    center[1] + radius * math.sin(theta) * math.sin(phi),
                    center[2] + radius * math.cos(theta),
                )
            )
    verts.append((center[0], center[1], center[2] - radius))
    faces = [(0, 1 + j, 1 + (j + 1) % segments) for j in range(segments)]
    for i in range(rings - 2):
        a, b = 1 + i * segments, 1 + (i + 1) * segments
        faces += [
            (a + j, b + j, b + (j + 1) % segments, a + (j + 1) % segments) for j in range(segments)
        ]
    last, base = len(verts) - 1, 1 + (rings - 2) * segments
    faces += [(base + (j + 1) % segments, base + j, last) for j in range(segments)]
    return verts, faces


def _skinned_mesh(bpy, name, verts, faces, groups, armature, materials):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, v)) for v in verts], [], faces)
    for material in materials:
        mesh.materials.append(material)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.parent = armature
    for group_name, indices, weight in groups:
        group = obj.vertex_groups.get(group_name) or obj.vertex_groups.new(name=group_name)
        group.add(list(indices), weight, "REPLACE")
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    return obj


def _key_avatar(bpy, armature, rec: str, frames: int, variant: int):
    """Walk a little, look down at the cabinet and sway the arms: every bone the camera and the
    hand pass depend on moves, so a wrong attachment shows up in the tests."""
    action = bpy.data.actions.new(f"{rec}_CC_Base_Body")
    action.use_fake_user = True  # an action no object uses is otherwise dropped on save
    armature.animation_data_create().action = action
    pose = armature.pose.bones
    for bone in pose:
        bone.rotation_mode = TWIST_MODE if bone.name in TWIST_BONES else "QUATERNION"
    from mathutils import Euler

    for f in range(frames):
        t = f / max(frames - 1, 1)
        pose["CC_Base_Hip"].location = (0.03 * math.sin(4 * t), 0.0, -0.12 * t)  # bone axes: y up
        pose["CC_Base_Hip"].keyframe_insert("location", frame=f)
        pitch = math.radians(38 + 6 * math.sin(6 * t + variant))
        yaw = math.radians(8 * math.sin(3 * t))
        pose["CC_Base_Head"].rotation_quaternion = Euler((pitch, 0.0, yaw)).to_quaternion()
        pose["CC_Base_Head"].keyframe_insert("rotation_quaternion", frame=f)
        for side, sign in (("L", 1), ("R", -1)):
            swing = math.radians(10 * math.sin(5 * t + sign))
            pose[f"CC_Base_{side}_Upperarm"].rotation_quaternion = Euler(
                (swing, 0, 0)
            ).to_quaternion()
            pose[f"CC_Base_{side}_Upperarm"].keyframe_insert("rotation_quaternion", frame=f)
            twist = pose[f"CC_Base_{side}_ForearmTwist02"]
            twist.rotation_euler[1] = math.radians(TWIST_DEGREES * (0.6 + 0.4 * math.sin(3 * t)))
            twist.keyframe_insert("rotation_euler", index=1, frame=f)
            curl = math.radians(25 * (0.5 + 0.5 * math.sin(7 * t)))
            for finger in FINGERS[1:]:
                bone = pose[f"CC_Base_{side}_{finger}2"]
                bone.rotation_quaternion = Euler((curl, 0, 0)).to_quaternion()
                bone.keyframe_insert("rotation_quaternion", frame=f)
    return action


def _key_drawer(bpy, drawer, rec: str, frames: int, opens: bool):
    action = bpy.data.actions.new(f"{rec}_{DRAWER}")
    action.use_fake_user = True
    drawer.animation_data_create().action = action
    first, last = DRAWER_OPENS
    for f in (0, first, last, frames - 1) if opens else (0, frames - 1):
        drawer.location = (0.25 if opens and f >= last else 0.0, 0, 0)
        drawer.keyframe_insert("location", frame=f)
        drawer.keyframe_insert("rotation_quaternion", frame=f)
    return action


def _write_actions(root: Path, rec: str, frames: int, variant: int) -> None:
    path = root / "Actions" / f"{rec}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if variant == 0:
        lines = [
            f"0\t{DRAWER_OPENS[0] - 1}\twalk to the cabinet",
            f"{DRAWER_OPENS[0]}\t{frames - 1}\topen the drawer",
        ]
    else:
        lines = [f"0\t{frames - 1}\tlook at the cabinet"]
    path.write_text("\n".join(lines) + "\n")


# ---- SMPL-X: fits in the smplx_result format and a stand-in model file -------------------------

# Approximate SMPL-X rest joints (y-up, facing +Z, left = +X), metres; 25..54 are the fingers.
_SMPLX_BODY_JOINTS = [
    (0, -0.35, 0), (0.06, -0.44, 0), (-0.06, -0.44, 0), (0, -0.24, 0), (0.1, -0.82, 0),
    (-0.1, -0.82, 0), (0, -0.1, 0), (0.1, -1.22, -0.04), (-0.1, -1.22, -0.04), (0, -0.05, 0),
    (0.11, -1.28, 0.08), (-0.11, -1.28, 0.08), (0, 0.16, 0), (0.07, 0.09, 0), (-0.07, 0.09, 0),
    (0, 0.25, 0.01), (0.17, 0.12, 0), (-0.17, 0.12, 0), (0.43, 0.12, 0), (-0.43, 0.12, 0),
    (0.68, 0.12, 0), (-0.68, 0.12, 0), (0, 0.23, 0.03), (0.032, 0.31, 0.08), (-0.032, 0.31, 0.08),
]  # fmt: skip
SMPLX_PARENTS = [
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
]  # fmt: skip
SMPLX_VERTICES = 10475


def smplx_rest_joints() -> np.ndarray:
    joints = [np.array(j, dtype=float) for j in _SMPLX_BODY_JOINTS]
    for sign in (1.0, -1.0):
        wrist = joints[20 if sign > 0 else 21]
        # index, middle, pinky, ring, thumb (the SMPL-X order), 3 joints each
        for spread, forward in ((0.02, 0.0), (0.0, 0.0), (-0.04, 0.0), (-0.02, 0.0), (0.03, 0.04)):
            for seg in (1, 2, 3):
                joints.append(wrist + np.array((sign * (0.08 + 0.03 * seg), 0.0, spread + forward)))
    return np.stack(joints)


def write_smplx_model(path: Path, seed: int = 0) -> Path:
    """A stand-in SMPL-X model file: every key `smplx.create` reads, real shapes, random content.

    Each joint owns a small blob of vertices (weight 1), so skinning is exact and the hands are
    the blobs of the wrist and finger joints; the extra vertices pad V to the real 10475.
    """
    rng = np.random.default_rng(seed)
    joints = smplx_rest_joints()
    n_joints = len(joints)
    sphere_v, sphere_f = _sphere((0, 0, 0), 1.0, rings=8, segments=12)
    sphere_v, per = np.array(sphere_v), len(sphere_v)
    verts, faces, owner = [], [], []
    radii = [0.015 if j >= 20 and j != 22 and j not in (23, 24) else 0.06 for j in range(n_joints)]
    for j in range(n_joints):
        faces += [tuple(len(verts) + i for i in tri) for face in sphere_f for tri in _tris(face)]
        verts += list(joints[j] + radii[j] * sphere_v)
        owner += [j] * per
    while len(verts) < SMPLX_VERTICES:  # pad with torso points so the vertex ids SMPL-X uses exist
        owner.append(int(rng.choice([0, 3, 6, 9])))
        verts.append(joints[owner[-1]] + rng.normal(0, 0.03, 3))
    verts, owner = np.array(verts[:SMPLX_VERTICES]), np.array(owner[:SMPLX_VERTICES])
    weights = np.zeros((SMPLX_VERTICES, n_joints))
    weights[np.arange(SMPLX_VERTICES), owner] = 1.0
    regressor = np.zeros((n_joints, SMPLX_VERTICES))
    for j in range(n_joints):  # joints regress exactly to their rest positions
        members = np.flatnonzero(owner == j)[:per]
        regressor[j, members] = 1.0 / len(members)
    faces = np.array(faces, dtype=np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        v_template=verts.astype(np.float32),
        f=faces,
        shapedirs=(rng.normal(0, 1e-3, (SMPLX_VERTICES, 3, 20))).astype(np.float32),
        posedirs=(rng.normal(0, 1e-5, (SMPLX_VERTICES, 3, 486))).astype(np.float32),
        J_regressor=regressor.astype(np.float32),
        weights=weights.astype(np.float32),
        kintree_table=np.stack([np.array(SMPLX_PARENTS), np.arange(n_joints)]).astype(np.int64),
        hands_componentsl=np.eye(45, dtype=np.float32),
        hands_componentsr=np.eye(45, dtype=np.float32),
        hands_meanl=rng.normal(0, 0.1, 45).astype(np.float32),
        hands_meanr=rng.normal(0, 0.1, 45).astype(np.float32),
        lmk_faces_idx=rng.integers(0, len(faces), 51).astype(np.int64),
        lmk_bary_coords=np.full((51, 3), 1 / 3, dtype=np.float32),
    )
    return path


def _tris(face: tuple) -> list[tuple]:
    return [(face[0], face[i], face[i + 1]) for i in range(1, len(face) - 1)]


def _write_smplx_result(root: Path, rec: str, frames: int) -> None:
    """Fits that put the stand-in body where the avatar stands, arms forward, head bowed."""
    from scipy.spatial.transform import Rotation

    t = np.linspace(0, 1, frames)[:, None]
    body = np.zeros((frames, 21, 3))
    for joint, sign in ((16, 1), (17, -1)):  # shoulders: arms forward and down
        arm = Rotation.from_euler("yz", [-sign * 70, -sign * 25], degrees=True).as_rotvec()
        body[:, joint - 1] = arm + np.array((0.1, 0, 0)) * np.sin(5 * t)
    body[:, 15 - 1, 0] = np.radians(35) + 0.1 * np.sin(6 * t[:, 0])  # head pitched down
    transl = np.concatenate([0.03 * np.sin(4 * t), 1.3 + 0 * t, -0.12 * t], axis=1)  # y-up
    result = {
        "betas": np.zeros(0, np.float32),
        "global_orient": np.zeros((frames, 3), np.float32),
        "body_pose": body.reshape(frames, 63).astype(np.float32),
        "left_hand_pose": (0.2 * np.ones((frames, 45)) * np.sin(7 * t)).astype(np.float32),
        "right_hand_pose": (0.2 * np.ones((frames, 45)) * np.sin(7 * t)).astype(np.float32),
        "jaw_pose": np.zeros((frames, 3), np.float32),
        "expression": np.zeros((frames, 10), np.float32),
        "transl": transl.astype(np.float32),
        "gender": "",
    }
    path = root / "smplx_result" / f"{rec}_smplx_results.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))


def demo_stage(workdir: Path, recipe_name: str) -> dict:
    """`dwm-data demo`: render the mini release's recording whose drawer opens."""
    release = write_release(Path(workdir))
    return {"root": str(release.root), "recordings": [RECORDINGS[0]]}
