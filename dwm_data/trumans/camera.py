"""The head-attached ego camera, for both bodies, and TRUMANS' y-up world to Blender's z-up.

`blend` body (the official `rendering_common.create_ego_camera`): in the canonical pose the
camera sits at the centre of `CC_Base_Eye` (both eyeballs) looking along the avatar's forward
axis (-Y, +Z up) and is parented to `CC_Base_FacialBone`, keeping that transform, so it follows
the head rigidly. `smplx` body: the same idea on SMPL-X joints: at the midpoint of the eye joints
in the rest model, carried by the head joint: T(t) = G_head(t) G_head(rest)^-1 T(rest).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dwm_data import blender
from dwm_data.cameras import Intrinsics
from dwm_data.errors import UnitError

EYE_MESH = "CC_Base_Eye"
CAMERA_BONE = "CC_Base_FacialBone"
CAMERA_NAME = "DWM_EgoCamera"

# TRUMANS y-up world -> Blender z-up world: (x, y, z) -> (x, -z, y), a +90 degree turn about X.
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
# SMPL-X rest frame (+Y up, facing +Z, left +X) -> OpenCV camera axes looking where the body looks.
SMPLX_CAMERA_AXES = np.diag([-1.0, -1.0, 1.0])


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """(..., 3) TRUMANS/SMPL-X world points in Blender's world."""
    return points @ Y_UP_TO_Z_UP[:3, :3].T


def attach_to_cc_head(scene: Any, armature: Any, intrinsics: Intrinsics, first: int) -> Any:
    """The official ego camera on the CC4 avatar; the scene is left at frame `first`."""
    from mathutils import Matrix, Vector

    bpy = blender.import_bpy()
    if EYE_MESH not in bpy.data.objects:
        raise UnitError("camera", f"no '{EYE_MESH}' mesh to place the ego camera")
    if CAMERA_BONE not in armature.pose.bones:
        raise UnitError("camera", f"armature {armature.name} has no bone {CAMERA_BONE}")
    scene.frame_set(first)
    for bone in armature.pose.bones:  # the canonical pose, as the official script sets it
        # Quaternion mode first, as the official reset does: a bone keyed in Euler (the add-on
        # keys CC_Base_{L,R}_ForearmTwist02 in YXZ) then ignores its keys for the whole
        # recording, and an un-keyed pose value (the add-on's hand scale) stays reset.
        bone.rotation_mode = "QUATERNION"
        bone.location = (0.0, 0.0, 0.0)
        bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        bone.scale = (1.0, 1.0, 1.0)
    bpy.context.view_layer.update()
    eye = bpy.data.objects[EYE_MESH]
    centre = sum((Vector(c) for c in eye.bound_box), Vector()) / 8.0
    position = eye.matrix_world @ centre
    rotation = Vector((0.0, -1.0, 0.0)).to_track_quat("-Z", "Y")
    world = Matrix.Translation(position) @ rotation.to_matrix().to_4x4()
    camera = blender.new_camera(scene, intrinsics, CAMERA_NAME)
    camera.parent = armature
    camera.parent_type = "BONE"
    camera.parent_bone = CAMERA_BONE
    bpy.context.view_layer.update()
    camera.matrix_world = world  # keeps the canonical-pose transform under the new parent
    scene.camera = camera
    scene.frame_set(first)  # the action puts the avatar back in its recorded pose
    return camera


def smplx_rest_camera(rest_joints: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world in the SMPL-X rest frame: between the eye joints (23, 24), looking
    along the body's forward axis (+Z) with +Y up."""
    pose = np.eye(4)
    pose[:3, :3] = SMPLX_CAMERA_AXES
    pose[:3, 3] = rest_joints[[23, 24]].mean(axis=0)
    return pose


def head_carried(head: np.ndarray, head_rest: np.ndarray, camera_rest: np.ndarray) -> np.ndarray:
    """(T,4,4) camera poses rigidly attached to a joint: G(t) G(rest)^-1 T(rest)."""
    return head @ np.linalg.inv(head_rest) @ camera_rest
