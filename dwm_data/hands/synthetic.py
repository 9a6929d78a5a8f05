"""A generated MANO-format model pair, for tests and the demo (the real MANO is licence-gated).

The files have the layout of the released pickles (chumpy `Ch`/`Select` objects, a sparse joint
regressor, 778 vertices, the fingertip vertex ids smplx and HaMeR use), so the same loading,
fitting and rendering code runs on them as on the real ones. The geometry is a plain tube hand:
five jointed fingers on a box palm, each ring of vertices centred on its joint.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dwm_data.hands.mano import MANO_FILES, TIP_VERTICES

NUM_VERTICES = 778
RING = 36  # vertices per ring around a finger
# MANO joint order: wrist, index, middle, pinky, ring, thumb (three joints each, base first).
_FINGER_ORDER = ("index", "middle", "pinky", "ring", "thumb")
# Right hand at rest (metres): fingers along +x, palm facing -z, thumb towards +y.
_FINGER_BASES = {
    "index": (0.085, 0.025, 0.0),
    "middle": (0.09, 0.005, 0.0),
    "ring": (0.085, -0.015, 0.0),
    "pinky": (0.075, -0.033, 0.0),
    "thumb": (0.02, 0.03, 0.005),
}
_FINGER_DIRECTIONS = {"thumb": (0.7, 0.7, 0.0)}
_SEGMENTS = {"thumb": (0.035, 0.03, 0.025), "pinky": (0.025, 0.018, 0.016)}
_DEFAULT_SEGMENTS = (0.035, 0.025, 0.02)  # base->middle, middle->end, end->tip
_RADII = (0.009, 0.008, 0.007, 0.006)  # rings at the three joints and before the tip
_TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")  # as TIP_VERTICES


class _Ch:
    """Pickled as `chumpy.ch.Ch` (state {'x': array}), as in the released files."""

    def __init__(self, x: np.ndarray):
        self.x = x


class _Select:
    """Pickled as `chumpy.reordering.Select` over a `Ch`, as the released shapedirs are."""

    def __init__(self, a: _Ch, idxs: np.ndarray, preferred_shape: tuple[int, ...]):
        self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape


@contextmanager
def _chumpy_names() -> Iterator[None]:
    """Let pickle record the stand-ins under chumpy's module names, without chumpy."""
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    modules = {name: types.ModuleType(name) for name in saved}
    modules["chumpy.ch"].Ch = _Ch
    modules["chumpy.reordering"].Select = _Select
    originals = {cls: (cls.__module__, cls.__qualname__) for cls in (_Ch, _Select)}
    _Ch.__module__, _Ch.__qualname__ = "chumpy.ch", "Ch"
    _Select.__module__, _Select.__qualname__ = "chumpy.reordering", "Select"
    sys.modules.update(modules)
    try:
        yield
    finally:
        for cls, (module, qualname) in originals.items():
            cls.__module__, cls.__qualname__ = module, qualname
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _right_hand(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Template, faces, joints, skinning and joint regressor of the right tube hand."""
    joints = np.zeros((16, 3))
    parents = np.full(16, -1)
    verts: list[np.ndarray] = []
    weights: list[int] = []  # joint each vertex follows rigidly
    regress: dict[int, list[int]] = {}
    faces: list[tuple[int, int, int]] = []
    parts: list[int] = []  # index into `faces` where each convex part (palm, finger) starts
    tips: dict[str, int] = {}

    def add(points: np.ndarray, joint: int) -> list[int]:
        start = sum(len(v) for v in verts)
        verts.append(points)
        weights.extend([joint] * len(points))
        return list(range(start, start + len(points)))

    # Palm: a box from the wrist to the knuckles, following the wrist joint.
    box = np.array(
        [[x, y, z] for x in (-0.01, 0.08) for y in (-0.04, 0.04) for z in (-0.012, 0.012)]
    )
    palm = add(box, 0)
    parts.append(len(faces))
    regress[0] = [palm[i] for i in (0, 1, 2, 3)]  # the wrist end: centred on the origin
    for a, b, c, d in (
        (0, 1, 3, 2),
        (4, 6, 7, 5),
        (0, 4, 5, 1),
        (2, 3, 7, 6),
        (0, 2, 6, 4),
        (1, 5, 7, 3),
    ):
        faces += [(palm[a], palm[b], palm[c]), (palm[a], palm[c], palm[d])]
    box_centre = box[:4].mean(axis=0)
    joints[0] = box_centre

    for f, finger in enumerate(_FINGER_ORDER):
        base = np.array(_FINGER_BASES[finger])
        direction = np.array(_FINGER_DIRECTIONS.get(finger, (1.0, 0.0, 0.0)))
        direction /= np.linalg.norm(direction)
        side = np.cross(direction, [0.0, 0.0, 1.0])
        up = np.cross(side, direction)
        lengths = _SEGMENTS.get(finger, _DEFAULT_SEGMENTS)
        centres = [base, base + direction * lengths[0], base + direction * sum(lengths[:2])]
        centres.append(centres[-1] + direction * lengths[2] * 0.7)
        angles = np.linspace(0, 2 * np.pi, RING, endpoint=False)
        rings = []
        parts.append(len(faces))
        for r, (centre, radius) in enumerate(zip(centres, _RADII, strict=True)):
            joint = 1 + 3 * f + min(r, 2)
            ring = centre + radius * (np.cos(angles)[:, None] * side + np.sin(angles)[:, None] * up)
            rings.append(add(ring, joint))
            if r < 3:
                joints[joint] = centre
                parents[joint] = 0 if r == 0 else joint - 1
                regress[joint] = rings[-1]
        tip = add((centres[-1] + direction * lengths[2] * 0.3)[None], 3 + 3 * f)[0]
        tips[finger] = tip
        for lower, upper in zip(rings[:-1], rings[1:], strict=True):
            for i in range(RING):
                j = (i + 1) % RING
                faces += [(lower[i], lower[j], upper[j]), (lower[i], upper[j], upper[i])]
        faces += [(rings[-1][i], rings[-1][(i + 1) % RING], tip) for i in range(RING)]
        cap = add(centres[0][None], 1 + 3 * f)[0]  # closes the finger base
        faces += [(rings[0][(i + 1) % RING], rings[0][i], cap) for i in range(RING)]

    template = np.concatenate(verts)
    faces = _outward_faces(template, np.array(faces), [*parts, len(faces)])
    # Fill up to MANO's vertex count with points inside the palm (no faces, like MANO's
    # vertices hidden between fingers), then move the tip vertices to MANO's tip ids.
    filler = rng.uniform(
        [0.0, -0.03, -0.008], [0.07, 0.03, 0.008], (NUM_VERTICES - len(template), 3)
    )
    template = np.concatenate([template, filler])
    weights.extend([0] * len(filler))
    order = np.arange(NUM_VERTICES)
    for finger, target in zip(_TIP_ORDER, TIP_VERTICES, strict=True):
        current = int(np.nonzero(order == tips[finger])[0][0])
        order[[current, target]] = order[[target, current]]
    new_index = np.empty(NUM_VERTICES, np.int64)
    new_index[order] = np.arange(NUM_VERTICES)
    regressor = np.zeros((16, NUM_VERTICES))
    for joint, members in regress.items():
        regressor[joint, new_index[members]] = 1.0 / len(members)
    skinning = np.zeros((NUM_VERTICES, 16))
    skinning[new_index[np.arange(NUM_VERTICES)], np.array(weights)] = 1.0
    return {
        "v_template": template[order],
        "f": new_index[faces],
        "J": joints,
        "parents": parents,
        "weights": skinning,
        "J_regressor": regressor,
    }


def _outward_faces(vertices: np.ndarray, faces: np.ndarray, bounds: list[int]) -> np.ndarray:
    """Wind every face of each convex part so its normal points away from the part's centre,
    as MANO's faces do (lighting and back-face tests depend on it)."""
    faces = faces.copy()
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        part = faces[start:stop]
        a, b, c = (vertices[part[:, i]] for i in range(3))
        centre = vertices[np.unique(part)].mean(axis=0)
        inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3 - centre) < 0
        part[inward] = part[inward][:, [0, 2, 1]]
    return faces


def mano_model_dicts(seed: int = 0) -> dict[str, dict]:
    """The left and right model dicts (numpy), before pickling; the left mirrors the right."""
    import scipy.sparse

    rng = np.random.default_rng(seed)
    hand = _right_hand(rng)
    v = hand["v_template"]
    shapedirs = np.zeros((NUM_VERTICES, 3, 20))
    shapedirs[:, :, 0] = 0.1 * (v - v.mean(axis=0))  # overall size
    shapedirs[:, 0, 1] = 0.1 * v[:, 0]  # finger length
    shapedirs[:, :, 2:] = 0.001 * rng.normal(size=(NUM_VERTICES, 3, 18))
    posedirs = 1e-4 * rng.normal(size=(NUM_VERTICES, 3, 135))
    components = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    mirror = np.array([-1.0, 1.0, 1.0])
    out = {}
    for side in ("right", "left"):
        flip = mirror if side == "left" else np.ones(3)
        kintree = np.stack([hand["parents"], np.arange(16)]).astype(np.int64)
        kintree[0, 0] = 4294967295
        out[side] = {
            "v_template": v * flip,
            "f": hand["f"][:, [0, 2, 1]] if side == "left" else hand["f"],
            "J": hand["J"] * flip,
            "kintree_table": kintree,
            "weights": hand["weights"],
            "J_regressor": scipy.sparse.csc_matrix(hand["J_regressor"]),
            "shapedirs": shapedirs * flip[None, :, None],
            # pose features are (R - I) per joint; a mirrored hand has M R M, which flips
            # entry (i, j) by flip_i * flip_j
            "posedirs": posedirs * flip[None, :, None] * np.tile(np.outer(flip, flip).ravel(), 15),
            "hands_components": components,
            "hands_mean": 0.1 * rng.normal(size=45),
            "hands_coeffs": rng.normal(size=(16, 45)),
            "bs_style": "lbs",
            "bs_type": "lrotmin",
        }
    return out


def write_mano_models(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write `MANO_LEFT.pkl` and `MANO_RIGHT.pkl` in the released (chumpy) layout."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for side, model in mano_model_dicts(seed).items():
        stored = dict(model)
        for key in ("v_template", "J", "weights", "posedirs"):
            stored[key] = _Ch(model[key])
        full = model["shapedirs"]
        idxs = np.arange(full.size).reshape(full.shape)[:, :, :10].ravel()
        stored["shapedirs"] = _Select(_Ch(full), idxs, (NUM_VERTICES, 3, 10))
        paths[side] = folder / MANO_FILES[side]
        with _chumpy_names(), open(paths[side], "wb") as handle:
            pickle.dump(stored, handle, protocol=2)
    return paths
