"""The batched renderer draws the image pyrender's scene renderer (4x MSAA) draws.

The reference below is the scene-per-frame pyrender path `render_mesh` used before: one scene,
one `IntrinsicsCamera` and one mesh per hand per frame, the same Phong shader swapped in
through pyrender's shader cache, and pyrender's multisampled framebuffer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from dwm_data.cameras import Intrinsics
from dwm_data.hands.render import AMBIENT, DIFFUSE, render_mesh
from dwm_data.hands.track import SIDES
from dwm_data.sample import HAND_COLORS

pyrender = pytest.importorskip("pyrender")
trimesh = pytest.importorskip("trimesh")

W, H = 720, 480
K = Intrinsics.from_fov(W, H, 60)

_VERTEX = """#version 330 core
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

_FRAGMENT = f"""#version 330 core
in vec3 frag_position;
in vec3 frag_normal;
in vec4 frag_color_0;
uniform vec3 cam_pos;
out vec4 frag_color;
void main()
{{
    vec3 to_light = normalize(cam_pos - frag_position);
    float lambert = max(dot(normalize(frag_normal), to_light), 0.0);
    frag_color = vec4(clamp(frag_color_0.rgb * ({AMBIENT} + {DIFFUSE} * lambert), 0.0, 1.0), 1.0);
}}
"""


def _pyrender_reference(vertices, faces, k: Intrinsics, width: int, height: int) -> np.ndarray:
    """`faces` is a (left, right) pair."""
    renderer = _reference_renderer(width, height)
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0))
    out = np.zeros((len(vertices), height, width, 3), np.uint8)
    for index, per_side in enumerate(vertices):
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 1.0), ambient_light=(0, 0, 0))
        points = np.concatenate([v for v in per_side if v is not None])
        camera = pyrender.IntrinsicsCamera(
            k.fx,
            k.fy,
            k.cx + 0.5,
            k.cy + 0.5,
            znear=points[:, 2].min() * 0.5,
            zfar=points[:, 2].max() * 2,
        )
        scene.add(camera, pose=np.eye(4))
        for side, verts, side_faces in zip(SIDES, per_side, faces, strict=True):
            if verts is None:
                continue
            verts_gl = verts * [1.0, -1.0, -1.0]  # OpenCV -> OpenGL camera axes
            normals = _outward_normals(verts_gl, np.asarray(side_faces))
            colour = np.tile([*HAND_COLORS[side], 1.0], (len(verts), 1)).astype(np.float32)
            primitive = pyrender.Primitive(
                positions=verts_gl.astype(np.float32),
                normals=normals.astype(np.float32),
                color_0=colour,
                indices=np.asarray(side_faces, np.uint32),
                material=material,
            )
            scene.add(pyrender.Mesh([primitive]))
        color, _ = renderer.render(scene, flags=pyrender.RenderFlags.SKIP_CULL_FACES)
        out[index] = color[..., :3]
    return out


_REFERENCE: dict[tuple[int, int], object] = {}


def _reference_renderer(width: int, height: int):
    """Kept for the session: deleting a pyrender renderer terminates the EGL display that every
    context in the process shares, render_mesh's included."""
    from pyrender.shader_program import ShaderProgramCache

    if (width, height) not in _REFERENCE:
        renderer = pyrender.OffscreenRenderer(width, height)
        shaders = Path(tempfile.mkdtemp(prefix="dwm-reference-shaders-"))
        (shaders / "mesh.vert").write_text(_VERTEX)
        (shaders / "mesh.frag").write_text(_FRAGMENT)
        renderer._renderer._program_cache = ShaderProgramCache(shader_dir=str(shaders))
        _REFERENCE[(width, height)] = renderer
    return _REFERENCE[(width, height)]


def _outward_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, negated when the faces wind inward (signed volume about
    the centroid), one face at a time."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(verts)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    centred = verts - verts.mean(axis=0)
    volume = np.einsum("ij,ij->i", centred[faces[:, 0]], np.cross(b - a, c - a)).sum()
    return normals if volume >= 0 else -normals


def _agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mask IoU (pixels with any colour) and mean |difference| (0..255) inside either mask."""
    a, b = ours.any(-1), reference.any(-1)
    inside = a | b
    diff = np.abs(ours.astype(int) - reference.astype(int))[inside]
    return (a & b).sum() / inside.sum(), diff.mean()


def test_two_mano_hands_match_pyrender_at_720x480(tmp_path):
    from dwm_data.bench.hands import two_hands

    vertices, faces, _ = two_hands(tmp_path, 4)
    ours = render_mesh(vertices, faces, K, W, H)
    reference = _pyrender_reference(vertices, faces, K, W, H)
    iou, diff = _agreement(ours, reference)
    assert reference.any(-1).sum() > 4 * 20_000  # both hands, large in the frame
    assert iou >= 0.99 and diff <= 2.0, (iou, diff)


def test_open_mesh_seen_into_its_hole_matches_pyrender():
    """MANO is open at the wrist: the coverage pass must still find the whole silhouette."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    keep = sphere.vertices[sphere.faces].mean(axis=1)[:, 2] < 0.02  # cap cut off
    rotation = trimesh.transformations.rotation_matrix(2.5, [1, 0.3, 0])[:3, :3]
    frames = [[None, sphere.vertices @ rotation.T + [0.0, 0.0, 0.3]]]
    k = Intrinsics.from_fov(192, 128, 60)
    ours = render_mesh(frames, sphere.faces[keep], k, 192, 128)
    reference = _pyrender_reference(frames, (sphere.faces[keep],) * 2, k, 192, 128)
    iou, diff = _agreement(ours, reference)
    assert iou >= 0.99 and diff <= 2.0, (iou, diff)


def test_hands_cut_by_the_image_border_match_pyrender():
    """Frames sit side by side in one framebuffer; a hand cut by the border must not bleed."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    k = Intrinsics.from_fov(192, 128, 60)
    frames = [
        [sphere.vertices + [x, y, 0.3], sphere.vertices + [-x, -y, 0.35]]
        for x, y in ((0.17, 0.0), (0.0, 0.11), (0.16, 0.1), (0.19, -0.12))
    ]
    ours = render_mesh(frames, sphere.faces, k, 192, 128)
    reference = _pyrender_reference(frames, (sphere.faces,) * 2, k, 192, 128)
    assert reference[:, :, 0].any() and reference[:, :, -1].any()  # cut at left and right
    iou, diff = _agreement(ours, reference)
    assert iou >= 0.99 and diff <= 2.0, (iou, diff)
