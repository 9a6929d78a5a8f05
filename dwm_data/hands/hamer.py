"""HaMeR on MediaPipe boxes, as DWM's fork runs it: crops, batches, full-image camera, left flip.

HaMeR is not on PyPI and its weights and MANO are user files, so only the network call comes
from the user's HaMeR install; the crop preparation and the conversion of its outputs into a
`HandTrack` are ours and follow HaMeR's definitions (`ViTDetDataset`, `cam_crop_to_full`):
- box = landmark extent, scaled 2.0, widened to the 192:256 aspect, squared to its long side;
- left hands are cropped mirrored, the network predicts a right hand, and the output is mirrored
  back (x of vertices and keypoints, the sign of the crop camera's tx; rotations M R M);
- the camera is HaMeR's: focal 5000/256 * max(W, H), principal point at the image centre.
HaMeR formulas count pixels from the image corner; our pixels count from the first pixel's
centre (see `cameras.Intrinsics`), hence the half-pixel shifts below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics, project
from dwm_data.errors import MissingAssetError
from dwm_data.hands.track import HandTrack

FOCAL_LENGTH = 5000.0
IMAGE_SIZE = 256
BBOX_SHAPE = (192, 256)  # width, height of the backbone's view
RESCALE = 2.0
MEAN = 255 * np.array([0.485, 0.456, 0.406])
STD = 255 * np.array([0.229, 0.224, 0.225])
MIRROR = np.diag([-1.0, 1.0, 1.0])
CHECKPOINTS = ("new_hamer_weights.ckpt", "hamer.ckpt")  # the upgraded weights first, as DWM
HOW_TO_GET_HAMER = (
    "git clone --recursive https://github.com/geopavlakos/hamer, pip install -e '.[all]', run "
    "its fetch_demo_data.sh and put MANO_RIGHT.pkl (mano.is.tue.mpg.de) in _DATA/data/mano/; "
    "pass that folder as --hamer-dir"
)

# A HaMeR-like model: batch {"img": (B,3,256,256)} -> outputs named as HaMeR names them.
HamerModel = Callable[[dict[str, Any]], dict[str, Any]]


def hamer_intrinsics(width: int, height: int) -> Intrinsics:
    """HaMeR's full-image camera: nearly orthographic (about 2.9 degrees at 720x480)."""
    focal = FOCAL_LENGTH / IMAGE_SIZE * max(width, height)
    return Intrinsics(focal, focal, width / 2 - 0.5, height / 2 - 0.5, width, height)


@dataclass(frozen=True)
class Crop:
    frame: int
    side: int  # 0 left (cropped mirrored), 1 right
    center: np.ndarray  # (2,) corner-origin pixels, as HaMeR's box_center
    size: float  # side of the square crop in pixels, as HaMeR's box_size


def crop_for(frame: int, side: int, keypoints_px: np.ndarray) -> Crop:
    """HaMeR's crop of one hand from its 21 landmarks (our pixel-centre coordinates)."""
    corner = keypoints_px + 0.5
    low, high = corner.min(axis=0), corner.max(axis=0)
    w, h = RESCALE * (high - low)
    target_w, target_h = BBOX_SHAPE
    if h / max(w, 1e-6) < target_h / target_w:
        h = max(w * target_h / target_w, h)
    else:
        w = max(h * target_w / target_h, w)
    return Crop(frame, side, (low + high) / 2, float(max(w, h, 1.0)))


def crop_image(image: np.ndarray, crop: Crop) -> np.ndarray:
    """The normalised (3,256,256) float32 RGB patch HaMeR's backbone expects; left hands
    mirrored. Bilinear, without HaMeR's optional anti-alias blur (disabled in its release)."""
    import cv2

    scale = crop.size / IMAGE_SIZE
    # dst index i <-> src centre coordinate (cx - size/2) + (i + 0.5) * scale - 0.5
    x0, y0 = crop.center - crop.size / 2
    matrix = np.array(
        [[1 / scale, 0, -(x0 - 0.5) / scale - 0.5], [0, 1 / scale, -(y0 - 0.5) / scale - 0.5]]
    )
    if crop.side == 0:
        matrix[0] = -matrix[0]
        matrix[0, 2] += IMAGE_SIZE - 1
    patch = cv2.warpAffine(
        image,
        matrix,
        (IMAGE_SIZE, IMAGE_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return ((patch - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def cam_crop_to_full(
    pred_cam: np.ndarray, crop: Crop, width: int, height: int, focal: float
) -> np.ndarray:
    """HaMeR's `cam_crop_to_full` for one crop whose tx is already un-mirrored: the camera-frame
    translation of the hand (x right, y down, z forward; units of HaMeR's camera)."""
    s, tx, ty = pred_cam
    bs = crop.size * s + 1e-9
    cx, cy = crop.center
    return np.array(
        [2 * (cx - width / 2) / bs + tx, 2 * (cy - height / 2) / bs + ty, 2 * focal / bs]
    )


def _batches(crops: list[Crop], batch_size: int) -> Iterator[list[Crop]]:
    for start in range(0, len(crops), batch_size):
        yield crops[start : start + batch_size]


def estimate_with_hamer(
    model: HamerModel, frames: np.ndarray, landmarks: HandTrack, batch_size: int = 8
) -> HandTrack:
    """Run `model` on every valid hand of `landmarks` (boxes from its pixels) and return the
    track in HaMeR's full-image camera, with vertices and MANO parameters (axis-angle)."""
    import torch
    from scipy.spatial.transform import Rotation

    height, width = frames.shape[1:3]
    intrinsics = hamer_intrinsics(width, height)
    track = HandTrack.empty(landmarks.frames, with_vertices=778)
    track.scores = landmarks.scores
    track.mano = {
        "global_orient": np.full((track.frames, 2, 3), np.nan, np.float32),
        "hand_pose": np.full((track.frames, 2, 45), np.nan, np.float32),
        "betas": np.full((track.frames, 2, 10), np.nan, np.float32),
    }
    crops = [
        crop_for(f, s, landmarks.keypoints_px[f, s])
        for f, s in zip(*np.nonzero(landmarks.valid), strict=True)
    ]
    for batch in _batches(crops, batch_size):
        images = np.stack([crop_image(frames[c.frame], c) for c in batch])
        with torch.no_grad():
            out = model({"img": torch.from_numpy(images)})
        out = {k: _numpy(v) for k, v in out.items()}
        params = {k: _numpy(v) for k, v in out["pred_mano_params"].items()}
        for i, crop in enumerate(batch):
            sign = 1.0 if crop.side == 1 else -1.0
            pred_cam = out["pred_cam"][i] * np.array([1.0, sign, 1.0])
            cam_t = cam_crop_to_full(pred_cam, crop, width, height, intrinsics.fx)
            flip = np.array([sign, 1.0, 1.0])
            vertices = out["pred_vertices"][i] * flip + cam_t
            keypoints = out["pred_keypoints_3d"][i] * flip + cam_t
            rotations = np.concatenate([params["global_orient"][i], params["hand_pose"][i]])
            if crop.side == 0:
                rotations = MIRROR @ rotations @ MIRROR
            rotvecs = Rotation.from_matrix(rotations).as_rotvec()
            f, s = crop.frame, crop.side
            track.valid[f, s] = True
            track.vertices[f, s] = vertices
            track.keypoints_cam[f, s] = keypoints
            track.keypoints_px[f, s] = project(keypoints, intrinsics)
            track.mano["global_orient"][f, s] = rotvecs[0]
            track.mano["hand_pose"][f, s] = rotvecs[1:].ravel()
            track.mano["betas"][f, s] = params["betas"][i]
    return track


def _numpy(value: Any) -> Any:
    if isinstance(value, dict):
        return value
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def hamer_files(root: Path | str | None, checkpoint: Path | str | None = None) -> dict[str, Path]:
    """The files a HaMeR run needs, or a MissingAssetError naming the first one missing."""
    if root is None:
        raise MissingAssetError("HaMeR folder", "nowhere (no --hamer-dir given)", HOW_TO_GET_HAMER)
    root = Path(root)
    data = root / "_DATA"
    ckpt_dir = data / "hamer_ckpts" / "checkpoints"
    if checkpoint is None:
        checkpoint = next((ckpt_dir / n for n in CHECKPOINTS if (ckpt_dir / n).is_file()), None)
    checkpoint = Path(checkpoint) if checkpoint else ckpt_dir / CHECKPOINTS[1]
    files = {
        "checkpoint": checkpoint,
        # HaMeR's load_hamer reads the config two folders above the checkpoint
        "model_config": checkpoint.parent.parent / "model_config.yaml",
        "mano_right": data / "data" / "mano" / "MANO_RIGHT.pkl",
        "mano_mean": data / "data" / "mano_mean_params.npz",
    }
    for name, path in files.items():
        if not path.is_file():
            raise MissingAssetError(
                f"HaMeR {name.replace('_', ' ')} ({path.name})", str(path.parent), HOW_TO_GET_HAMER
            )
    return files


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """HaMeR finds `_DATA` relative to the working directory (CACHE_DIR_HAMER = './_DATA')."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def load_hamer(root: Path | str | None, checkpoint: Path | str | None, device: str) -> HamerModel:
    """The user's HaMeR network as a `HamerModel` (needs the `hamer` package and its files)."""
    files = hamer_files(root, checkpoint)
    try:
        from hamer.models import load_hamer as hamer_load
    except ImportError as exc:
        raise MissingAssetError(
            "HaMeR python package 'hamer'", f"this environment ({exc})", HOW_TO_GET_HAMER
        ) from exc
    import torch

    with _inside(Path(root)):
        model, _ = hamer_load(str(files["checkpoint"]))
    model = model.to(device).eval()

    def run(batch: dict[str, Any]) -> dict[str, Any]:
        with _inside(Path(root)), torch.no_grad():
            return model({"img": batch["img"].to(device)})

    return run
