"""Hand videos: MANO-style meshes rendered offscreen with pyrender, or 21-keypoint skeletons.

The mesh style reproduces the official hand videos so the released checkpoint reads ours: black
background, constant colours per side (`HAND_COLORS`), z-buffered, and PyTorch3D's
`SoftPhongShader` lighting as DWM used it (ambient 0.7 + diffuse 0.6 from a point light at the
camera, no specular, no distance falloff, no gamma, back faces drawn). pyrender's own PBR shader
has falloff and gamma, so a small Phong fragment shader replaces it; pyrender still does the
geometry, the z-buffer and the headless GL context (EGL on Mesa, OSMesa when EGL is missing).
"""

from __future__ import annotations

import ctypes.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dwm_data.cameras import Intrinsics, project
from dwm_data.extras import require
from dwm_data.hands.track import BONES, SIDES, HandTrack
from dwm_data.sample import HAND_COLORS

AMBIENT = 0.7
DIFFUSE = 0.6

Faces = np.ndarray | tuple[np.ndarray, np.ndarray]
HandVertices = Sequence[Sequence[np.ndarray | None]] | np.ndarray

_VERTEX_SHADER = """#version 330 core
layout(location = 0) in vec3 position;
layout(location = NORMAL_LOC) in vec3 normal;
layout(location = COLOR_0_LOC) in vec4 color_0;
layout(location = INST_M_LOC) in mat4 inst_m;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
out vec3 frag_position;
out vec3 frag_normal;
out vec4 frag_color_0;
void main()
{
    gl_Position = P * V * M * inst_m * vec4(position, 1.0);
    frag_position = vec3(M * inst_m * vec4(position, 1.0));
    frag_normal = normalize(vec3(transpose(inverse(M * inst_m)) * vec4(normal, 0.0)));
    frag_color_0 = color_0;
}
"""

_FRAGMENT_SHADER = f"""#version 330 core
in vec3 frag_position;
in vec3 frag_normal;
in vec4 frag_color_0;
uniform vec3 cam_pos;
out vec4 frag_color;
void main()
{{
    vec3 to_light = normalize(cam_pos - frag_position);
    float lambert = max(dot(normalize(frag_normal), to_light), 0.0);
    vec3 color = frag_color_0.rgb * ({AMBIENT:.4f} + {DIFFUSE:.4f} * lambert);
    frag_color = vec4(clamp(color, 0.0, 1.0), 1.0);
}}
"""


def _choose_gl_platform() -> None:
    """EGL renders headless on Mesa llvmpipe; OSMesa only when no libEGL is installed."""
    if "PYOPENGL_PLATFORM" not in os.environ:
        os.environ["PYOPENGL_PLATFORM"] = "egl" if ctypes.util.find_library("EGL") else "osmesa"


class MeshRenderer:
    """One offscreen GL context reused across clips (creating one costs ~100 ms)."""

    def __init__(self, width: int, height: int):
        _choose_gl_platform()
        pyrender = require("pyrender", "hands")
        from pyrender.shader_program import ShaderProgramCache

        self.pyrender = pyrender
        self.width, self.height = width, height
        self.renderer = pyrender.OffscreenRenderer(width, height)
        self._shader_dir = tempfile.TemporaryDirectory(prefix="dwm-hand-shaders-")
        shader_dir = Path(self._shader_dir.name)
        (shader_dir / "mesh.vert").write_text(_VERTEX_SHADER)
        (shader_dir / "mesh.frag").write_text(_FRAGMENT_SHADER)
        # pyrender has no public hook for shaders; its program cache takes a shader folder.
        self.renderer._renderer._program_cache = ShaderProgramCache(shader_dir=str(shader_dir))
        self.material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0))

    def render(
        self,
        vertices: HandVertices,
        faces: Faces,
        intrinsics: Intrinsics,
        colors: dict[str, tuple[float, float, float]] = HAND_COLORS,
    ) -> np.ndarray:
        pyrender = self.pyrender
        k = intrinsics.scaled(self.width, self.height)
        left_faces, right_faces = faces if isinstance(faces, tuple) else (faces, faces)
        out = np.zeros((len(vertices), self.height, self.width, 3), np.uint8)
        for index, per_side in enumerate(vertices):
            hands = [
                (side, np.asarray(verts, np.float64), side_faces)
                for side, verts, side_faces in zip(
                    SIDES, per_side, (left_faces, right_faces), strict=True
                )
                if verts is not None and np.isfinite(np.asarray(verts)).all()
            ]
            hands = [h for h in hands if (h[1][:, 2] > 0).all()]
            if not hands:
                continue
            points = np.concatenate([verts for _, verts, _ in hands])
            box = _crop(project(points, k), self.width, self.height)
            if box is None:
                continue
            x0, y0, crop_w, crop_h = box
            scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 1.0), ambient_light=(0, 0, 0))
            # pyrender's cx/cy count from the pixel corner; ours from the first pixel's centre.
            camera = pyrender.IntrinsicsCamera(
                k.fx,
                k.fy,
                k.cx + 0.5 - x0,
                k.cy + 0.5 - y0,
                znear=points[:, 2].min() * 0.5,
                zfar=points[:, 2].max() * 2,
            )
            scene.add(camera, pose=np.eye(4))
            for side, verts, side_faces in hands:
                scene.add(self._mesh(verts, side_faces, colors[side]))
            self.renderer.viewport_width, self.renderer.viewport_height = crop_w, crop_h
            color, _ = self.renderer.render(scene, flags=pyrender.RenderFlags.SKIP_CULL_FACES)
            out[index, y0 : y0 + crop_h, x0 : x0 + crop_w] = color[..., :3]
        return out

    def _mesh(self, verts_cv: np.ndarray, faces: np.ndarray, color: tuple[float, float, float]):
        """A pyrender mesh in OpenGL camera axes, its faces wound outward so light hits the
        outside (mirrored left hands and some MANO files arrive wound the other way)."""
        verts = verts_cv * np.array([1.0, -1.0, -1.0])  # OpenCV -> OpenGL camera axes
        faces = _outward(verts, np.asarray(faces, np.int64))
        normals = _vertex_normals(verts, faces)
        colors = np.tile(np.array([*color, 1.0], np.float32), (len(verts), 1))
        primitive = self.pyrender.Primitive(
            positions=verts.astype(np.float32),
            normals=normals.astype(np.float32),
            color_0=colors,
            indices=faces.astype(np.uint32),
            material=self.material,
        )
        return self.pyrender.Mesh([primitive])

    def close(self) -> None:
        self.renderer.delete()
        self._shader_dir.cleanup()


_RENDERERS: dict[tuple[int, int], MeshRenderer] = {}


def mesh_renderer(width: int, height: int) -> MeshRenderer:
    """The process-wide renderer for this size (GL contexts are costly and not thread-safe)."""
    if (width, height) not in _RENDERERS:
        _RENDERERS[(width, height)] = MeshRenderer(width, height)
    return _RENDERERS[(width, height)]


def render_mesh(
    vertices_per_frame_side: HandVertices,
    faces: Faces,
    intrinsics: Intrinsics,
    width: int,
    height: int,
    colors: dict[str, tuple[float, float, float]] = HAND_COLORS,
) -> np.ndarray:
    """(F,H,W,3) uint8 hand meshes on black.

    `vertices_per_frame_side[f][s]` is a (V,3) array in the OpenCV camera frame for side s
    (0 left, 1 right), or None / NaN when that hand is absent. `faces` is one (T,3) array for
    both sides or a (left, right) pair. `intrinsics` may be for another size; it is rescaled.
    `colors` (RGB 0..1 per side) defaults to the official ones.
    """
    return mesh_renderer(width, height).render(vertices_per_frame_side, faces, intrinsics, colors)


def render_skeleton(
    track: HandTrack, intrinsics: Intrinsics, width: int, height: int
) -> np.ndarray:
    """(F,H,W,3) uint8: the 21-keypoint skeletons (EgoSim style) in the side colours on black.

    Drawn from `keypoints_px`, which are exact for every backend, rescaled from the size of
    `intrinsics` (the image the keypoints refer to) to width x height. The nearer hand is drawn
    last so it covers the other, as a z-buffer would.
    """
    cv2 = require("cv2", "hands")
    scale = np.array([width / intrinsics.width, height / intrinsics.height])
    thickness = max(1, round(min(width, height) / 160))
    out = np.zeros((track.frames, height, width, 3), np.uint8)
    depth = np.nan_to_num(track.keypoints_cam[..., 2]).mean(axis=-1)  # (F, 2)
    for index in range(track.frames):
        order = sorted(
            (s for s in range(2) if track.valid[index, s]),
            key=lambda s: -depth[index, s],
        )
        for side in order:
            points = (track.keypoints_px[index, side] + 0.5) * scale - 0.5
            if not np.isfinite(points).all():
                continue
            color = tuple(int(round(255 * c)) for c in HAND_COLORS[SIDES[side]])
            fixed = np.round(points * 16).astype(np.int32)  # 4 fractional bits: sub-pixel lines
            for a, b in BONES:
                cv2.line(
                    out[index], tuple(fixed[a]), tuple(fixed[b]), color, thickness, cv2.LINE_AA, 4
                )
            for point in fixed:
                cv2.circle(out[index], tuple(point), thickness * 16, color, -1, cv2.LINE_AA, 4)
    return out


def _crop(pixels: np.ndarray, width: int, height: int, step: int = 64) -> tuple[int, ...] | None:
    """(x0, y0, w, h): the part of the image the hands can cover, in sizes rounded up to `step`
    so the framebuffer is rarely re-made. llvmpipe's cost grows with the pixels drawn and read
    back, and hands cover a fraction of the frame: measured 5x faster than full frames at
    720x480. Integer shifts of the principal point keep the rasterisation pixel-identical."""
    low = np.floor(pixels.min(axis=0)).astype(int) - 2
    high = np.ceil(pixels.max(axis=0)).astype(int) + 3
    low, high = np.maximum(low, 0), np.minimum(high, [width, height])
    if (high <= low).any():
        return None
    size = np.minimum(-(-(high - low) // step) * step, [width, height])
    start = np.minimum(low, np.array([width, height]) - size)
    return int(start[0]), int(start[1]), int(size[0]), int(size[1])


def _outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces reversed when their signed volume about the centroid is negative (inward)."""
    centred = verts - verts.mean(axis=0)
    a, b, c = (centred[faces[:, i]] for i in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum()
    return faces if volume >= 0 else faces[:, [0, 2, 1]]


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (what smooth shading in PyTorch3D interpolates)."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(verts)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)
