"""MANO: read the licence-gated model files without chumpy, and run them through smplx.

The official `MANO_{LEFT,RIGHT}.pkl` pickles hold chumpy objects, and chumpy does not import on
Python 3.11 / numpy >= 1.24. A restricted unpickler maps every chumpy class to a stub that keeps
its state, and the stubs are resolved to plain arrays afterwards, so the real smplx MANO layer
can take the data as a `Struct`. The files are never redistributed: users pass their own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import MissingAssetError

MANO_FILES = {"left": "MANO_LEFT.pkl", "right": "MANO_RIGHT.pkl"}
# Fingertip vertices (thumb, index, middle, ring, pinky), as smplx `vertex_ids['mano']` and HaMeR.
TIP_VERTICES = (744, 320, 443, 554, 671)
# 16 MANO joints + 5 tips -> OpenPose/MediaPipe hand order (as HaMeR's `mano_to_openpose`).
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
_ALLOWED_MODULES = ("numpy", "scipy", "builtins", "copyreg", "copy_reg", "__builtin__", "_codecs")
HOW_TO_GET_MANO = (
    "register at https://mano.is.tue.mpg.de, download 'Models & Code' and pass the folder "
    "holding MANO_RIGHT.pkl and MANO_LEFT.pkl (--mano-dir)"
)


class _ChumpyStub:
    """Stands in for any chumpy class while unpickling; keeps the pickled state."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"x": state}


class _ManoUnpickler(pickle.Unpickler):
    """Loads numpy/scipy data and chumpy stubs; refuses any other class (pickles run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            return type(name, (_ChumpyStub,), {})
        if module.split(".")[0] in _ALLOWED_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"MANO file refers to {module}.{name}, which is not data")


def _resolve(value: Any) -> Any:
    """chumpy `Ch` -> its array; `Select` -> the flat selection of its resolved source."""
    if not isinstance(value, _ChumpyStub):
        return value
    state = value.state
    if "a" in state and "idxs" in state:
        source = np.asarray(_resolve(state["a"]))
        picked = source.ravel()[np.asarray(state["idxs"])]
        shape = state.get("preferred_shape")
        return picked.reshape(shape) if shape is not None else picked
    if "x" in state:
        return np.asarray(_resolve(state["x"]))
    raise pickle.UnpicklingError(f"unsupported chumpy object with state keys {sorted(state)}")


def read_mano_pickle(path: Path) -> dict[str, Any]:
    """The model dict of a MANO pickle, with chumpy objects turned into numpy arrays."""
    with open(path, "rb") as handle:
        data = _ManoUnpickler(handle, encoding="latin1").load()
    return {key: _resolve(value) for key, value in data.items()}


def plain_mano_folder(mano_right: Path) -> Path:
    """A folder holding a chumpy-free copy of the user's MANO_RIGHT.pkl, for code that unpickles
    the file itself (HaMeR's smplx layer). It lives in the user's private cache, keyed by the
    source's content, and is never written anywhere a dataset or a release could pick it up."""
    source = Path(mano_right).read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dwm-data"
    folder = cache / "mano" / hashlib.sha256(source).hexdigest()[:16]
    target = folder / MANO_FILES["right"]
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for private in (folder.parent, folder):
            private.chmod(0o700)
        model = read_mano_pickle(Path(mano_right))
        partial = folder / f".{target.name}.{os.getpid()}"
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            pickle.dump(model, out, protocol=4)
        os.replace(partial, target)
    return folder


def mano_paths(folder: Path | str | None) -> dict[str, Path]:
    """Both model files in `folder`, or a MissingAssetError naming what is missing."""
    if folder is None:
        raise MissingAssetError(
            "MANO model folder", "nowhere (no --mano-dir given)", HOW_TO_GET_MANO
        )
    paths = {side: Path(folder) / name for side, name in MANO_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingAssetError(" and ".join(missing), str(folder), HOW_TO_GET_MANO)
    return paths


@dataclass
class ManoOutput:
    vertices: Any  # torch (B, V, 3)
    keypoints: Any  # torch (B, 21, 3), OpenPose order


class ManoHands:
    """Both MANO hands as smplx layers: full 45-dof articulation relative to the flat hand
    (no PCA, no mean pose), the parameterisation HaMeR predicts and `hands.npz` stores."""

    def __init__(self, folder: Path | str | None, device: str = "cpu"):
        import smplx
        import torch

        self.torch = torch
        self.layers = {}
        for side, path in mano_paths(folder).items():
            data = read_mano_pickle(path)
            # smplx prints "only 10 shape coefficients" for every MANO file there is.
            with contextlib.redirect_stdout(io.StringIO()):
                self.layers[side] = smplx.MANO(
                    str(path),
                    is_rhand=side == "right",
                    data_struct=smplx.utils.Struct(**data),
                    use_pca=False,
                    flat_hand_mean=True,
                    create_global_orient=False,
                    create_hand_pose=False,
                    create_betas=False,
                    create_transl=False,
                ).to(device)
        _fix_left_shapedirs(self.layers["left"], self.layers["right"])
        self.faces = {
            side: np.asarray(layer.faces, np.int64) for side, layer in self.layers.items()
        }

    def __call__(
        self, side: str, global_orient: Any, hand_pose: Any, betas: Any, transl: Any
    ) -> ManoOutput:
        """Vertices and 21 keypoints for a batch of one side; all inputs are torch (B, ...)."""
        out = self.layers[side](
            global_orient=global_orient, hand_pose=hand_pose, betas=betas, transl=transl
        )
        tips = out.vertices[:, list(TIP_VERTICES)]
        joints = self.torch.cat([out.joints[:, :16], tips], dim=1)
        return ManoOutput(out.vertices, joints[:, list(MANO_TO_OPENPOSE)])


def _fix_left_shapedirs(left: Any, right: Any) -> None:
    """The released MANO_LEFT.pkl has its x shape directions unmirrored (smplx issue #48): the
    left hand then widens the wrong way. Mirror them when they resemble the right hand's more
    than their mirror image (a scale-free form of smplx's `< 1` check)."""
    same = (left.shapedirs[:, 0, :] - right.shapedirs[:, 0, :]).abs().sum()
    mirrored = (left.shapedirs[:, 0, :] + right.shapedirs[:, 0, :]).abs().sum()
    if same < mirrored:
        left.shapedirs[:, 0, :] *= -1
