"""Hand videos: MANO-style meshes rendered offscreen with OpenGL, or 21-keypoint skeletons.

The mesh style reproduces the official hand videos so the released checkpoint reads ours: black
background, constant colours per side (`HAND_COLORS`), z-buffered, and PyTorch3D's
`SoftPhongShader` lighting as DWM used it (ambient 0.7 + diffuse 0.6 from a point light at the
camera, no specular, no distance falloff, no gamma, back faces drawn), with edges antialiased as
4x MSAA would.

Speed (llvmpipe on a CPU, see docs/benchmarks.md): pyrender's headless context (EGL on Mesa,
OSMesa when EGL is missing) is kept, but a clip's frames are drawn in one go into tiles of one
framebuffer and read back once. llvmpipe's MSAA costs 2.5x a plain pass, so the image is a plain
pass (one shaded sample per pixel) plus a coverage pass that draws the faces turned away from the
camera, unshaded, once per MSAA sample point (the geometry shifted by the point's offset) into
one bit each; edge pixels are then weighted by the share of bits set, as the MSAA resolve would
weight them. tests/test_hands_render_reference.py holds the old pyrender path as the reference.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

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
layout(location = 1) in vec3 normal;
uniform vec4 intrinsics;
uniform vec2 tile;
uniform vec2 depth_range;
uniform vec2 shifts[4];
out vec3 frag_position;
out vec3 frag_normal;
flat out int sample_bit;
void main()
{
    vec2 pixel = intrinsics.xy * position.xy / position.z + intrinsics.zw + shifts[gl_InstanceID];
    vec2 ndc = 2.0 * pixel / tile - 1.0;  // upside down: GL's rows come back top first
    float near = depth_range.x, far = depth_range.y;
    float z = ((far + near) * position.z - 2.0 * far * near) / (far - near);
    gl_Position = vec4(ndc * position.z, z, position.z);
    frag_position = position;
    frag_normal = normal;
    sample_bit = 1 << gl_InstanceID;
}
"""

_SHADE_SHADER = f"""#version 330 core
in vec3 frag_position;
in vec3 frag_normal;
uniform vec3 color;
out vec4 frag_color;
void main()
{{
    vec3 to_light = normalize(-frag_position);
    float lambert = max(dot(normalize(frag_normal), to_light), 0.0);
    frag_color = vec4(clamp(color * ({AMBIENT:.4f} + {DIFFUSE:.4f} * lambert), 0.0, 1.0), 1.0);
}}
"""

_COVER_SHADER = """#version 330 core
flat in int sample_bit;
layout(location = 1) out vec4 coverage;
void main()
{
    coverage = vec4(float(sample_bit) / 255.0, 0.0, 0.0, 0.0);
}
"""

ATLAS = (2048, 1024)  # the framebuffer of tiles, one per frame: ~13 frames of two hands
# GL's standard 4x MSAA sample positions inside a pixel (x right, y up from its corner).
SAMPLE_POSITIONS = ((0.375, 0.125), (0.875, 0.375), (0.125, 0.625), (0.625, 0.875))
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint16)


def choose_gl_platform() -> None:
    """EGL renders headless on Mesa llvmpipe; OSMesa only when no libEGL is installed."""
    if "PYOPENGL_PLATFORM" not in os.environ:
        os.environ["PYOPENGL_PLATFORM"] = "egl" if ctypes.util.find_library("EGL") else "osmesa"


class _Draw(NamedTuple):
    frame: int
    box: tuple[int, int, int, int]
    near: float
    far: float
    hands: list[tuple[int, int, int, tuple[float, float, float]]]  # first, count, back, colour


_Tile = tuple[_Draw, int, int]  # a frame and its tile's corner (x, y) in the atlas


class MeshRenderer:
    """One offscreen GL context reused across clips (creating one costs ~100 ms)."""

    def __init__(self, width: int, height: int):
        choose_gl_platform()
        pyrender = require("pyrender", "hands")
        from OpenGL import GL
        from OpenGL.GL import shaders

        self.gl = GL
        self.width, self.height = width, height
        self.atlas = (max(ATLAS[0], width + 1), max(ATLAS[1], height + 1))
        self.context = pyrender.OffscreenRenderer(width, height)
        self.context._platform.make_current()
        self.vao = GL.glGenVertexArrays(1)
        GL.glBindVertexArray(self.vao)
        self.vbo, self.ibo = GL.glGenBuffers(2)
        vertex = shaders.compileShader(_VERTEX_SHADER, GL.GL_VERTEX_SHADER)
        self.programs = {}
        for name, source in (("shade", _SHADE_SHADER), ("cover", _COVER_SHADER)):
            program = shaders.compileProgram(
                vertex, shaders.compileShader(source, GL.GL_FRAGMENT_SHADER)
            )
            uniforms = {
                u: GL.glGetUniformLocation(program, u)
                for u in ("intrinsics", "tile", "depth_range", "color", "shifts")
            }
            self.programs[name] = (program, uniforms)
        shifts = np.array([(0.0, 0.0)] * 4, np.float32)
        GL.glUseProgram(self.programs["shade"][0])
        GL.glUniform2fv(self.programs["shade"][1]["shifts"], 4, shifts)
        # The pixel centre samples where each MSAA sample would: shift the geometry the other way.
        shifts = np.array([(0.5 - x, y - 0.5) for x, y in SAMPLE_POSITIONS], np.float32)
        GL.glUseProgram(self.programs["cover"][0])
        GL.glUniform2fv(self.programs["cover"][1]["shifts"], 4, shifts)
        self.fb = GL.glGenFramebuffers(1)
        colour, cover, depth = GL.glGenRenderbuffers(3)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fb)
        for buffer, fmt, attachment in (
            (colour, GL.GL_RGBA8, GL.GL_COLOR_ATTACHMENT0),
            (cover, GL.GL_R8, GL.GL_COLOR_ATTACHMENT1),
            (depth, GL.GL_DEPTH_COMPONENT24, GL.GL_DEPTH_ATTACHMENT),
        ):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, *self.atlas)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, buffer)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glLogicOp(GL.GL_OR)

    def render(
        self,
        vertices: HandVertices,
        faces: Faces,
        intrinsics: Intrinsics,
        colors: dict[str, tuple[float, float, float]] = HAND_COLORS,
    ) -> np.ndarray:
        k = intrinsics.scaled(self.width, self.height)
        pair = faces if isinstance(faces, tuple) else (faces, faces)
        side_faces = dict(zip(SIDES, pair, strict=True))
        side_faces = {
            side: np.asarray(f, np.int64).reshape(-1, 3) for side, f in side_faces.items()
        }
        out = np.zeros((len(vertices), self.height, self.width, 3), np.uint8)
        frames = []  # (frame, box, near, far, [(side, verts)])
        for index, per_side in enumerate(vertices):
            hands = [
                (side, np.asarray(verts, np.float64))
                for side, verts in zip(SIDES, per_side, strict=True)
                if verts is not None and np.isfinite(np.asarray(verts)).all()
            ]
            hands = [(side, verts) for side, verts in hands if (verts[:, 2] > 0).all()]
            if not hands:
                continue
            points = np.concatenate([verts for _, verts in hands])
            box = _crop(project(points, k), self.width, self.height)
            if box is not None:
                frames.append((index, box, points[:, 2].min() * 0.5, points[:, 2].max() * 2, hands))
        if not frames:
            return out
        attributes, indices, draws = self._geometry(frames, side_faces, colors)
        self.context._platform.make_current()
        self._upload(attributes, indices)
        for batch in _pack(draws, self.atlas):
            self._draw(batch, k, out)
        return out

    def _geometry(
        self,
        frames: list[tuple[int, tuple[int, int, int, int], float, float, list]],
        side_faces: dict[str, np.ndarray],
        colors: dict[str, tuple[float, float, float]],
    ) -> tuple[np.ndarray, np.ndarray, list[_Draw]]:
        """Vertex attributes (positions, outward normals), the index buffer and the draw list.
        Each hand's faces are followed by those of them turned away from the camera, which the
        coverage pass draws: every ray into a closed surface leaves through one, and so does one
        into the open wrist. Normals come from all hands of a side at once: per-hand numpy calls
        cost more than GL."""
        groups: dict[tuple[str, int], list[int]] = {}  # hands sharing faces and a vertex count
        hands = [hand for *_, per_frame in frames for hand in per_frame]
        for number, (side, verts) in enumerate(hands):
            groups.setdefault((side, len(verts)), []).append(number)
        normals: list[np.ndarray] = [np.empty(0)] * len(hands)
        away: list[np.ndarray] = [np.empty(0)] * len(hands)
        for (side, _), numbers in groups.items():
            stacked = np.stack([hands[n][1] for n in numbers])
            group_normals, group_away = _outward_normals(stacked, side_faces[side])
            for i, n in enumerate(numbers):
                normals[n], away[n] = group_normals[i], group_away[i]
        attributes, indices, draws = [], [], []
        base = first = number = 0
        for index, box, near, far, per_frame in frames:
            parts = []
            for side, verts in per_frame:
                faces = side_faces[side]
                turned = away[number]
                attributes.append(np.hstack([verts, normals[number]]))
                indices += [(faces + base).ravel(), (faces[turned] + base).ravel()]
                parts.append((first, faces.size, 3 * int(turned.sum()), colors[side]))
                base += len(verts)
                first += faces.size + 3 * int(turned.sum())
                number += 1
            draws.append(_Draw(index, box, near, far, parts))
        return np.concatenate(attributes).astype(np.float32), np.concatenate(indices), draws

    def _upload(self, attributes: np.ndarray, indices: np.ndarray) -> None:
        """One vertex and one index buffer for the whole clip."""
        GL = self.gl
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, attributes.nbytes, attributes, GL.GL_STREAM_DRAW)
        for location in range(2):
            GL.glEnableVertexAttribArray(location)
            GL.glVertexAttribPointer(
                location, 3, GL.GL_FLOAT, False, 24, ctypes.c_void_p(12 * location)
            )
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.ibo)
        indices = indices.astype(np.uint32)
        GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices, GL.GL_STREAM_DRAW)

    def _pass(self, name: str, batch: list[_Tile], k: Intrinsics, instances: int) -> None:
        """Draw every frame of the batch into its tile with program `name`."""
        GL = self.gl
        program, u = self.programs[name]
        GL.glUseProgram(program)
        for draw, x, y in batch:
            x0, y0, w, h = draw.box
            GL.glViewport(x, y, w, h)
            # Pixel centres sit at +0.5 in GL window coordinates, at integers in ours.
            GL.glUniform4f(u["intrinsics"], k.fx, k.fy, k.cx + 0.5 - x0, k.cy + 0.5 - y0)
            GL.glUniform2f(u["tile"], w, h)
            GL.glUniform2f(u["depth_range"], draw.near, draw.far)
            for first, count, back, color in draw.hands:
                if name == "cover":  # the faces turned away, listed after the hand's faces
                    first, count = first + count, back
                GL.glUniform3f(u["color"], *color)
                GL.glDrawElementsInstanced(
                    GL.GL_TRIANGLES,
                    count,
                    GL.GL_UNSIGNED_INT,
                    ctypes.c_void_p(4 * first),
                    instances,
                )

    def _draw(self, batch: list[_Tile], k: Intrinsics, out: np.ndarray) -> None:
        """Render one atlas of frames (shaded, then covered) and copy them into `out`."""
        GL = self.gl
        wide = max(x + d.box[2] for d, x, _ in batch) + 1  # with the empty pixels after
        used = max(y + d.box[3] for d, _, y in batch) + 1
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fb)
        GL.glBindVertexArray(self.vao)
        GL.glDrawBuffers(2, [GL.GL_COLOR_ATTACHMENT0, GL.GL_COLOR_ATTACHMENT1])
        GL.glEnable(GL.GL_SCISSOR_TEST)  # clear only the tiles in use
        GL.glScissor(0, 0, wide, used)
        GL.glClearColor(0.0, 0.0, 0.0, 0.0)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        GL.glDisable(GL.GL_SCISSOR_TEST)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glDrawBuffers(2, [GL.GL_COLOR_ATTACHMENT0, GL.GL_NONE])
        self._pass("shade", batch, k, 1)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glEnable(GL.GL_COLOR_LOGIC_OP)
        GL.glDrawBuffers(2, [GL.GL_NONE, GL.GL_COLOR_ATTACHMENT1])
        self._pass("cover", batch, k, 4)
        GL.glDisable(GL.GL_COLOR_LOGIC_OP)
        image = np.empty((used, wide, 3), np.uint8)
        cover = np.empty((used, wide), np.uint8)
        for attachment, fmt, array in ((0, GL.GL_RGB, image), (1, GL.GL_RED, cover)):
            GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0 + attachment)
            GL.glReadPixels(0, 0, wide, used, fmt, GL.GL_UNSIGNED_BYTE, array)
        _antialias(image, cover)
        for draw, x, y in batch:
            x0, y0, w, h = draw.box
            out[draw.frame, y0 : y0 + h, x0 : x0 + w] = image[y : y + h, x : x + w]


def _antialias(image: np.ndarray, cover: np.ndarray) -> None:
    """`image` made what 4x MSAA would make of it: each pixel the hands cover in part (`cover`
    holds one bit per sample point) weighted by the share covered. A pixel whose centre missed
    (black: lit colours never are) takes the mean colour of its hit neighbours, as MSAA shades
    it from the same faces."""
    width, flat = cover.shape[1], image.reshape(-1, 3)
    edge = np.flatnonzero(cover.ravel() - np.uint8(1) < 14)  # 1..14: some samples, not all
    source = flat[edge].astype(np.float32)
    missing = ~source.any(axis=1)
    missed = edge[missing]
    total = np.zeros((len(missed), 3), np.float32)
    count = np.zeros(len(missed), np.float32)
    for step in (-width - 1, -width, -width + 1, -1, 1, width - 1, width, width + 1):
        near = flat[np.clip(missed + step, 0, len(flat) - 1)]
        hit = near.any(axis=1)
        total += near * hit[:, None]
        count += hit
    source[missing] = total / np.maximum(count, 1)[:, None]
    share = _POPCOUNT[cover.ravel()[edge]] / np.float32(4)
    flat[edge] = np.round(source * share[:, None]).astype(np.uint8)


def _pack(draws: list[_Draw], atlas: tuple[int, int]) -> Iterator[list[_Tile]]:
    """Tiles placed in rows across the atlas: (draw, x, y), one batch per atlas. An empty pixel
    after each tile and row keeps a hand cut by the image border from taking colour from the
    next tile when edges are antialiased."""
    batch, x, y, row = [], 0, 0, 0
    for draw in draws:
        w, h = draw.box[2:]
        if x + w + 1 > atlas[0]:
            x, y, row = 0, y + row + 1, 0
        if y + h + 1 > atlas[1]:
            yield batch
            batch, x, y, row = [], 0, 0, 0
        batch.append((draw, x, y))
        x, row = x + w + 1, max(row, h)
    yield batch


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
    from OpenGL.error import GLError

    try:
        return mesh_renderer(width, height).render(
            vertices_per_frame_side, faces, intrinsics, colors
        )
    except GLError:
        # Any pyrender renderer deleted in this process (also by garbage collection) terminates the
        # EGL display that every context shares; start over with fresh contexts, once.
        _RENDERERS.clear()
        return mesh_renderer(width, height).render(
            vertices_per_frame_side, faces, intrinsics, colors
        )


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


def render_hands(
    track: HandTrack, faces: Faces | None, intrinsics: Intrinsics, width: int, height: int
) -> np.ndarray:
    """(F,H,W,3) uint8: the hand video of a track, as every source draws it: meshes when there
    are mesh faces (the track's MANO vertices, what the official model was trained on), else
    skeletons. `intrinsics` are those the track was estimated in; they are rescaled."""
    if faces is not None:
        return render_mesh(track.vertices, faces, intrinsics, width, height)
    return render_skeleton(track, intrinsics, width, height)


def _crop(pixels: np.ndarray, width: int, height: int, step: int = 16) -> tuple[int, ...] | None:
    """(x0, y0, w, h): the part of the image the hands can cover, in sizes rounded up to `step`
    so tiles pack in rows. llvmpipe's cost grows with the pixels drawn and read back, and hands
    cover a fraction of the frame: measured 5x faster than full frames at 720x480. Integer
    shifts of the principal point keep the rasterisation pixel-identical."""
    low = np.floor(pixels.min(axis=0)).astype(int) - 2
    high = np.ceil(pixels.max(axis=0)).astype(int) + 3
    low, high = np.maximum(low, 0), np.minimum(high, [width, height])
    if (high <= low).any():
        return None
    size = np.minimum(-(-(high - low) // step) * step, [width, height])
    start = np.minimum(low, np.array([width, height]) - size)
    return int(start[0]), int(start[1]), int(size[0]), int(size[1])


def _outward_normals(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (n,V,3) hands sharing `faces`: area-weighted vertex normals (what smooth shading in
    PyTorch3D interpolates) pointing out of each mesh so light hits the outside, and the (n,T)
    faces turned away from the camera. Mirrored left hands and some MANO files arrive wound
    inward, which the signed volume about the centroid reveals."""
    count, num_v = verts.shape[:2]
    if len(faces) == 0:
        return np.zeros_like(verts), np.zeros((count, 0), bool)
    a, b, c = (verts[:, faces[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)  # (n,T,3)
    centred = a - verts.mean(axis=1, keepdims=True)
    volume = np.einsum("ntj,ntj->n", centred, face_normals)
    face_normals *= np.where(volume < 0, -1.0, 1.0)[:, None, None]
    ids = (faces.ravel()[None, :] + num_v * np.arange(count)[:, None]).ravel()
    normals = np.stack(
        [
            np.bincount(ids, np.repeat(face_normals[..., i], 3, axis=1).ravel(), count * num_v)
            for i in range(3)
        ],
        axis=1,
    ).reshape(count, num_v, 3)
    length = np.linalg.norm(normals, axis=2, keepdims=True)
    normals /= np.where(length > 0, length, 1.0)
    return normals, np.einsum("ntj,ntj->nt", face_normals, a) > 0
