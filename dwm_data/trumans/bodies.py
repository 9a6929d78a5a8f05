"""The actor in the scene: the recording's CC4 avatar (`blend`) or a fitted SMPL-X body (`smplx`).

A body puts the actor and the ego camera in place for a source frame (`pose`), names the objects
the static pass hides (`actor`), and hands the hand pass its two hand meshes in world space.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dwm_data import blender
from dwm_data.cameras import Intrinsics, opencv_to_blender
from dwm_data.errors import MissingAssetError, UnitError
from dwm_data.extras import require
from dwm_data.trumans import blend
from dwm_data.trumans.camera import (
    CAMERA_NAME,
    Y_UP_TO_Z_UP,
    attach_to_cc_head,
    head_carried,
    smplx_rest_camera,
    y_up_to_z_up,
)

BODY_MESH = "CC_Base_Body"
SIDES = ("L", "R")  # CC4 side letters in HAND_SIDES order (0 left, 1 right)
CC_HAND_GROUPS = {
    side: [f"CC_Base_{side}_Hand"]
    + [
        f"CC_Base_{side}_{finger}{n}"
        for finger in ("Thumb", "Index", "Mid", "Ring", "Pinky")
        for n in (1, 2, 3)
    ]
    for side in SIDES
}
# SMPL-X joints of each hand: the wrist and 15 finger joints.
SMPLX_HAND_JOINTS = {"L": [20, *range(25, 40)], "R": [21, *range(40, 55)]}
SMPLX_HEAD = 15
SMPLX_CHUNK = 256  # frames per SMPL-X forward pass


@dataclass(frozen=True)
class HandMesh:
    """One side's hand: which vertices of the body mesh, and triangles indexing into them."""

    vertex_ids: np.ndarray
    faces: np.ndarray


class Body(Protocol):
    camera: Any
    backend: str

    def pose(self, frame: int) -> None:
        """Put actor and camera at source frame `frame` (after `scene.frame_set(frame)`)."""

    def actor(self) -> list[Any]:
        """The objects the static pass hides."""

    def hand_vertices(self) -> list[np.ndarray]:
        """World-space vertices of the left and right hand at the current frame."""

    def hand_faces(self) -> tuple[np.ndarray, np.ndarray]: ...


def hand_mesh(selected: np.ndarray, triangles: np.ndarray) -> HandMesh:
    """Keep the triangles whose three vertices are selected (the official MASK modifier keeps
    exactly these faces), re-indexed into the selected vertices."""
    ids = np.flatnonzero(selected)
    keep = selected[triangles].all(axis=1)
    remap = np.full(len(selected), -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    return HandMesh(ids, remap[triangles[keep]])


def _triangles(mesh: Any) -> np.ndarray:
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


class BlendBody:
    """The CC4 avatar of the `.blend`; hands are its 16 hand and finger vertex groups per side."""

    backend = "cc4-vertex-groups"

    def __init__(self, recording: blend.Recording, intrinsics: Intrinsics):
        bpy = blender.import_bpy()

        self.recording = recording
        if BODY_MESH not in bpy.data.objects:
            raise UnitError("actor", f"no '{BODY_MESH}' mesh in scene '{recording.scene.name}'")
        self.body = bpy.data.objects[BODY_MESH]
        # The hand meshes are read from the viewport evaluation; with only the armature
        # deformation in it, vertex ids stay those of the vertex groups. Renders are unaffected.
        for modifier in self.body.modifiers:
            if modifier.type != "ARMATURE":
                modifier.show_viewport = False
        self.hands = self._hand_meshes()
        self.camera = attach_to_cc_head(
            recording.scene, recording.armature, intrinsics, recording.first
        )

    def _hand_meshes(self) -> list[HandMesh]:
        mesh = self.body.data
        index = {group.name: group.index for group in self.body.vertex_groups}
        triangles = _triangles(mesh)
        out = []
        for side in SIDES:
            wanted = {index[name] for name in CC_HAND_GROUPS[side] if name in index}
            if not wanted:
                raise UnitError("hands", f"'{BODY_MESH}' has no {side} hand vertex groups")
            selected = np.array(
                [any(g.group in wanted and g.weight > 0 for g in v.groups) for v in mesh.vertices]
            )
            out.append(hand_mesh(selected, triangles))
        return out

    def pose(self, frame: int) -> None:
        """The action already posed the avatar and, through the bone parent, the camera."""

    def actor(self) -> list[Any]:
        return blend.actor_objects(self.recording.armature)

    def hand_vertices(self) -> list[np.ndarray]:
        bpy = blender.import_bpy()

        evaluated = self.body.evaluated_get(bpy.context.evaluated_depsgraph_get())
        mesh = evaluated.to_mesh()
        try:
            co = np.empty(len(mesh.vertices) * 3)
            mesh.vertices.foreach_get("co", co)
        finally:
            evaluated.to_mesh_clear()
        world = np.array(evaluated.matrix_world)
        co = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
        return [co[hand.vertex_ids] for hand in self.hands]

    def hand_faces(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hands[0].faces, self.hands[1].faces


@dataclass
class SmplxMotion:
    """A fitted SMPL-X sequence evaluated once: everything in Blender's z-up world."""

    vertices: np.ndarray  # (T, V, 3) float32
    faces: np.ndarray  # (F, 3)
    cameras: np.ndarray  # (T, 4, 4) OpenCV camera-to-world
    hands: list[HandMesh]


def load_fits(path: Path) -> dict[str, np.ndarray]:
    """`smplx_result/<rec>_smplx_results.pkl`, checked: the poses must be finite."""
    if not path.is_file():
        raise UnitError("smplx-fits", f"no SMPL-X fits at {path}")
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    keys = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "transl")
    missing = [k for k in keys if k not in data]
    if missing:
        raise UnitError("smplx-fits", f"{path.name} lacks {', '.join(missing)}")
    fits = {k: np.asarray(data[k], dtype=np.float32) for k in keys}
    for key, value in fits.items():
        if not np.isfinite(value).all():
            raise UnitError("smplx-fits", f"{path.name}: {key} has NaN or infinite values")
    fits["betas"] = np.asarray(data.get("betas", np.zeros(0)), dtype=np.float32).reshape(-1)
    fits["gender"] = str(data.get("gender", "") or "")
    return fits


def smplx_model_file(model: Path, gender: str) -> Path:
    """The model file `smplx.create` would read for `model` (a file or an SMPL-X folder)."""
    model = Path(model)
    if model.is_file():
        return model
    for candidate in (
        model / "smplx" / f"SMPLX_{gender.upper()}.npz",
        model / f"SMPLX_{gender.upper()}.npz",
    ):
        if candidate.is_file():
            return candidate
    raise MissingAssetError(
        f"SMPL-X model (SMPLX_{gender.upper()}.npz)",
        str(model),
        "register at https://smpl-x.is.tue.mpg.de and pass --smplx-model",
    )


def evaluate_smplx(
    fits: dict[str, np.ndarray], model: Path, gender: str, hand_ids: Path | None
) -> SmplxMotion:
    """Run the SMPL-X model over the whole sequence (`use_pca=False`, `flat_hand_mean=True`)."""
    smplx = require("smplx", "render")
    torch = require("torch", "render")
    from smplx.lbs import batch_rodrigues

    path = smplx_model_file(model, gender)
    layer = smplx.create(
        str(path),
        model_type="smplx",
        gender=gender,
        use_pca=False,
        flat_hand_mean=True,
        num_betas=10,
        ext="npz",
    )
    frames = len(fits["transl"])
    betas = np.zeros((1, 10), np.float32)
    betas[0, : min(10, fits["betas"].size)] = fits["betas"][:10]
    betas_t = torch.from_numpy(betas)
    keys = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "transl")
    vertices, head_joint = [], []
    with torch.no_grad():
        rest = layer(betas=betas_t)
        for start in range(0, frames, SMPLX_CHUNK):  # LBS holds (B, V, 4, 4): bound B
            count = min(SMPLX_CHUNK, frames - start)
            out = layer(
                betas=betas_t.expand(count, -1),
                **{k: torch.from_numpy(fits[k][start : start + count]) for k in keys},
                jaw_pose=torch.zeros(count, 3),
                leye_pose=torch.zeros(count, 3),
                reye_pose=torch.zeros(count, 3),
                expression=torch.zeros(count, 10),
            )
            vertices.append(y_up_to_z_up(out.vertices.numpy()).astype(np.float32))
            head_joint.append(out.joints[:, SMPLX_HEAD].numpy())
        local = np.concatenate(
            [fits["global_orient"][:, None], fits["body_pose"].reshape(frames, 21, 3)], axis=1
        )
        rotations = (
            batch_rodrigues(torch.from_numpy(local.reshape(-1, 3)))
            .reshape(frames, 22, 3, 3)
            .numpy()
        )
    parents = layer.parents.numpy()
    chain, joint = [], SMPLX_HEAD
    while joint >= 0:
        chain.append(joint)
        joint = int(parents[joint])
    head_rotation = np.broadcast_to(np.eye(3), (frames, 3, 3)).copy()
    for joint in reversed(chain):  # root first: G = R_root R_... R_head
        head_rotation = head_rotation @ rotations[:, joint]
    rest_joints = rest.joints[0].numpy().astype(np.float64)
    head = np.tile(np.eye(4), (frames, 1, 1))
    head[:, :3, :3] = head_rotation
    head[:, :3, 3] = np.concatenate(head_joint)
    head_rest = np.eye(4)
    head_rest[:3, 3] = rest_joints[SMPLX_HEAD]
    cameras = Y_UP_TO_Z_UP @ head_carried(head, head_rest, smplx_rest_camera(rest_joints))
    vertices = np.concatenate(vertices)
    faces = np.asarray(layer.faces, dtype=np.int64)
    selected = hand_selection(layer.lbs_weights.numpy(), hand_ids, vertices.shape[1])
    return SmplxMotion(vertices, faces, cameras, [hand_mesh(s, faces) for s in selected])


def hand_selection(weights: np.ndarray, hand_ids: Path | None, count: int) -> list[np.ndarray]:
    """Per side, a vertex mask: from `MANO_SMPLX_vertex_ids.pkl` when given, else the vertices
    whose strongest skinning joint is a hand joint (the licence-free route)."""
    masks = [np.zeros(count, bool), np.zeros(count, bool)]
    if hand_ids is not None:
        if not Path(hand_ids).is_file():
            raise MissingAssetError(
                "MANO_SMPLX_vertex_ids.pkl",
                str(hand_ids),
                "download 'MANO and FLAME vertex indices' from smpl-x.is.tue.mpg.de",
            )
        with open(hand_ids, "rb") as handle:
            ids = pickle.load(handle)
        for mask, key in zip(masks, ("left_hand", "right_hand"), strict=True):
            mask[np.asarray(ids[key], dtype=np.int64)] = True
        return masks
    strongest = weights.argmax(axis=1)
    for mask, side in zip(masks, SIDES, strict=True):
        mask[np.isin(strongest, SMPLX_HAND_JOINTS[side])] = True
    return masks


class SmplxBody:
    """An SMPL-X mesh driven frame by frame from the fits; the CC4 avatar is hidden for good."""

    backend = "smplx"

    def __init__(self, recording: blend.Recording, intrinsics: Intrinsics, motion: SmplxMotion):
        bpy = blender.import_bpy()

        self.motion = motion
        blender.set_hidden(blend.actor_objects(recording.armature), True)
        mesh = bpy.data.meshes.new("SMPLX_Body")
        mesh.from_pydata(motion.vertices[0].astype(float).tolist(), [], motion.faces.tolist())
        material = bpy.data.materials.new("SMPLX_Skin")
        material.diffuse_color = (0.8, 0.6, 0.5, 1.0)
        mesh.materials.append(material)
        self.mesh_object = bpy.data.objects.new("SMPLX_Body", mesh)
        recording.scene.collection.objects.link(self.mesh_object)
        self.camera = blender.new_camera(recording.scene, intrinsics, CAMERA_NAME)
        recording.scene.camera = self.camera
        self.current = 0

    def pose(self, frame: int) -> None:
        if frame >= len(self.motion.vertices):
            raise UnitError(
                "smplx-fits", f"frame {frame} is past the {len(self.motion.vertices)} fitted frames"
            )
        self.current = frame
        mesh = self.mesh_object.data
        mesh.vertices.foreach_set("co", self.motion.vertices[frame].ravel())
        mesh.update()
        self.camera.matrix_world = blender.to_matrix(opencv_to_blender(self.motion.cameras[frame]))

    def actor(self) -> list[Any]:
        return [self.mesh_object]

    def hand_vertices(self) -> list[np.ndarray]:
        verts = self.motion.vertices[self.current]
        return [verts[hand.vertex_ids] for hand in self.motion.hands]

    def hand_faces(self) -> tuple[np.ndarray, np.ndarray]:
        return self.motion.hands[0].faces, self.motion.hands[1].faces


def current_camera(body: Body) -> np.ndarray:
    return blender.camera_to_world(body.camera)
