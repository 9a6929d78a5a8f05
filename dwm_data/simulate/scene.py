"""Scenes the static video is rendered from: Gaussian splats, meshes and `.blend` files.

- a splat `.ply` in the INRIA 3DGS layout (ours, INRIA's, nerfstudio's and gsplat's exports):
  the builders' splat renderer (gsplat on CUDA, our compositor on CPU), black background;
- a mesh (`.glb`, `.gltf`, `.obj`, or a `.ply` with faces) read by trimesh and drawn by pyrender
  (EGL/OSMesa headless, as the hand renderer), with its own materials or vertex colours, an
  ambient light and a light at the camera;
- a `.blend` through bpy and Cycles with the TRUMANS pass settings (`dwm_data.blender`).

The toolkit's world is z-up metres. A scene file's own up axis and unit are options (`up`,
`scale`: metres per scene unit), applied by mapping the cameras into the scene's frame rather
than moving the scene (a uniform scale leaves images as they are, and a splat's view-dependent
colours would otherwise need their spherical harmonics rotated).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dwm_data.cameras import Intrinsics, opencv_to_blender
from dwm_data.errors import DwmDataError

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
UP_AXES = ("x", "-x", "y", "-y", "z", "-z")
# The up axis a format means when the user does not say: glTF is +Y up by its specification,
# OBJ files nearly always are; Blender, Aria/MPS worlds and our splats are +Z up.
DEFAULT_UP = {".glb": "y", ".gltf": "y", ".obj": "y", ".ply": "z", ".blend": "z"}


class Scene(Protocol):
    kind: str

    def render(self, poses: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """(F, H, W, 3) uint8 frames from cameras `poses` (F, 4, 4), in the scene's frame."""

    def describe(self) -> dict[str, Any]:
        """What the scene is, for the result's `json`."""


def scene_rotation(up: str) -> np.ndarray:
    """The rotation taking scene coordinates to the z-up world, for a scene whose `up` axis
    points up: for "y" the +90 degree turn about x that Blender's glTF import makes."""
    if up not in UP_AXES:
        raise DwmDataError(f"up axis {up!r} is not one of {', '.join(UP_AXES)}")
    sign = -1.0 if up.startswith("-") else 1.0
    axis = "xyz".index(up[-1])
    if axis == 2:
        return np.diag([1.0, sign, sign])
    rows = {
        0: [[0, 0, -sign], [0, 1, 0], [sign, 0, 0]],
        1: [[1, 0, 0], [0, 0, -sign], [0, sign, 0]],
    }
    return np.array(rows[axis], np.float64)


def to_scene_frame(poses: np.ndarray, up: str, scale: float) -> np.ndarray:
    """World camera poses (metres, z up) as poses in the scene file's own frame and units."""
    rotation = scene_rotation(up)
    out = poses.copy()
    out[:, :3, :3] = rotation.T @ poses[:, :3, :3]
    out[:, :3, 3] = poses[:, :3, 3] @ rotation / scale
    return out


def load_scene(path: Path, samples: int = 64) -> Scene:
    """The scene a file holds, by its suffix and, for `.ply`, its header: one line when the file
    is neither a splat nor a mesh. `samples`: Cycles samples for a `.blend`."""
    path = Path(path)
    if not path.is_file():
        raise DwmDataError(f"scene {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        from dwm_data.splat.ply import read_header

        kind = read_header(path).kind
        if kind is None:
            raise DwmDataError(
                f"{path} is neither a Gaussian splat (no f_dc_*, opacity, scale_*, rot_* vertex "
                "fields) nor a mesh (no faces)"
            )
        return SplatScene(path) if kind == "splat" else MeshScene(path)
    if suffix in MESH_SUFFIXES:
        return MeshScene(path)
    if suffix == ".blend":
        return BlendScene(path, samples)
    raise DwmDataError(
        f"{path}: unknown scene format {suffix!r} (a splat .ply, a mesh .glb/.gltf/.obj/.ply, or "
        "a .blend)"
    )


class SplatScene:
    kind = "splat"

    def __init__(self, path: Path):
        from dwm_data.splat.ply import load_ply

        self.path = path
        self.params = load_ply(path)

    def render(self, poses: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """As the Aria builder renders its static video (`render_views`, rounded to bytes)."""
        import torch

        from dwm_data.splat.render import gsplat_K
        from dwm_data.splat.train import render_views

        frames = render_views(
            self.params,
            torch.from_numpy(np.linalg.inv(poses)).float(),
            torch.from_numpy(np.stack([gsplat_K(intrinsics)] * len(poses))).float(),
            intrinsics.width,
            intrinsics.height,
        )
        return (frames.numpy() * 255 + 0.5).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        from dwm_data.splat.render import backend_name, sh_degree_of

        return {
            "kind": self.kind,
            "file": str(self.path),
            "gaussians": len(self.params["means"]),
            "sh_degree": sh_degree_of(self.params),
            "renderer": backend_name(self.params["means"].device),
        }


_MESH_RENDERERS: dict[tuple[int, int], Any] = {}


def _mesh_renderer(width: int, height: int) -> Any:
    """One pyrender context per size for the whole process: deleting a pyrender renderer
    terminates the EGL display every context shares, the hand renderer's included."""
    from dwm_data.extras import require
    from dwm_data.hands.render import choose_gl_platform

    choose_gl_platform()
    pyrender = require("pyrender", "hands")
    if (width, height) not in _MESH_RENDERERS:
        _MESH_RENDERERS[(width, height)] = pyrender.OffscreenRenderer(width, height)
    return _MESH_RENDERERS[(width, height)]


class MeshScene:
    kind = "mesh"
    AMBIENT = 0.35
    LIGHT = 2.5  # a directional light along the view, so every surface the camera sees is lit

    def __init__(self, path: Path):
        from dwm_data.extras import require

        trimesh = require("trimesh", "hands")
        self.path = path
        try:
            loaded = trimesh.load(str(path), force="scene")
        except Exception as exc:  # trimesh raises many types for unreadable files
            raise DwmDataError(f"{path}: trimesh cannot read it as a mesh ({exc})") from exc
        if not loaded.geometry or all(
            len(getattr(g, "faces", ())) == 0 for g in loaded.geometry.values()
        ):
            raise DwmDataError(f"{path} holds no mesh faces")
        self.trimesh_scene = loaded

    def render(self, poses: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        from dwm_data.extras import require

        pyrender = require("pyrender", "hands")
        scene = pyrender.Scene.from_trimesh_scene(
            self.trimesh_scene, bg_color=[0, 0, 0, 0], ambient_light=[self.AMBIENT] * 3
        )
        extent = float(np.linalg.norm(self.trimesh_scene.extents))
        far = max(100.0, 10 * extent + float(np.abs(poses[:, :3, 3]).max()))
        camera = pyrender.IntrinsicsCamera(  # pyrender's principal point is at pixel corners
            intrinsics.fx, intrinsics.fy, intrinsics.cx + 0.5, intrinsics.cy + 0.5, 0.01, far
        )
        camera_node = scene.add(camera)
        light_node = scene.add(pyrender.DirectionalLight(intensity=self.LIGHT))
        renderer = _mesh_renderer(intrinsics.width, intrinsics.height)
        frames = []
        for pose in poses:
            gl_pose = opencv_to_blender(pose)  # Blender's camera axes are OpenGL's
            scene.set_pose(camera_node, gl_pose)
            scene.set_pose(light_node, gl_pose)
            color, _ = renderer.render(scene)
            frames.append(color[..., :3])
        return np.stack(frames).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        geometry = self.trimesh_scene.geometry.values()
        return {
            "kind": self.kind,
            "file": str(self.path),
            "meshes": len(self.trimesh_scene.geometry),
            "faces": int(sum(len(getattr(g, "faces", ())) for g in geometry)),
            "renderer": "pyrender",
            "ambient": self.AMBIENT,
            "camera_light": self.LIGHT,
        }


class BlendScene:
    kind = "blend"

    def __init__(self, path: Path, samples: int):
        self.path, self.samples = path, samples

    def render(self, poses: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Cycles with the TRUMANS interaction settings, from a camera with the path's
        horizontal field of view, one still per frame."""
        from PIL import Image

        from dwm_data import blender

        scene = blender.open_blend(self.path, "scene .blend", "check the SCENE argument")
        blender.configure_cycles(
            scene, intrinsics.width, intrinsics.height, self.samples, denoise=False, threads=0
        )
        camera = blender.new_camera(scene, intrinsics, "DWM_SimulateCamera")
        scene.camera = camera
        frames = []
        with tempfile.TemporaryDirectory() as folder:
            for index, pose in enumerate(poses):
                camera.matrix_world = blender.to_matrix(opencv_to_blender(pose))
                target = Path(folder) / f"{index:05d}.png"
                blender.render_still(scene, target, blender.compositing(scene))
                frames.append(np.asarray(Image.open(target).convert("RGB")))
        return np.stack(frames)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": str(self.path),
            "renderer": "cycles",
            "samples": self.samples,
        }
