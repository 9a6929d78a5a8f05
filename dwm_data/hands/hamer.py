"""HaMeR on MediaPipe boxes, as DWM's fork runs it: crops, batches, full-image camera, left flip.

HaMeR is not on PyPI and its weights and MANO are user files. Its own classes build the network
(`HAMER` from the checkpoint's `model_config.yaml`) and give the rendered faces; the crops and the
conversion of its outputs into a `HandTrack` are ours, equal to HaMeR's `ViTDetDataset` and
demo (tested against them):
- box = landmark extent, scaled 2.0, widened to the config's BBOX_SHAPE aspect, squared to its
  long side; a box more than 2.2x the crop size blurs the frame first (HaMeR's anti-alias);
- the patch maps the box centre onto the crop centre in OpenCV's pixel-index convention, left
  hands cropped from the mirrored frame; the network predicts a right hand, and the output is
  mirrored back (x of vertices and keypoints, the sign of the crop camera's tx; rotations M R M);
- the camera is HaMeR's: focal FOCAL_LENGTH / IMAGE_SIZE * max(W, H), principal point at the
  image centre.
HaMeR's boxes count pixels from the image corner; our pixels count from the first pixel's centre
(see `cameras.Intrinsics`), hence the half-pixel shifts below.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dwm_data.cameras import Intrinsics, project
from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.hands.track import HandTrack

RESCALE = 2.0  # box scale of DWM's fork (demo_mediapipe.py's rescale_factor)
MIRROR = np.diag([-1.0, 1.0, 1.0])
CHECKPOINTS = ("new_hamer_weights.ckpt", "hamer.ckpt")  # the upgraded weights first, as DWM
HOW_TO_GET_HAMER = (
    "git clone https://github.com/geopavlakos/hamer, run its fetch_demo_data.sh and put "
    "MANO_RIGHT.pkl (mano.is.tue.mpg.de) in _DATA/data/mano/; pass that folder as --hamer-dir"
)
HOW_TO_INSTALL_HAMER = (
    "pip install 'dwm-data[hamer]' (pytorch-lightning, yacs, timm, einops, scikit-image) and a "
    "torchvision built for your torch (make setup does both), then pass the HaMeR clone as "
    "--hamer-dir or pip install --no-deps -e <hamer clone>; detectron2, mmcv, ViTPose and chumpy "
    "are not needed"
)
# Sub-modules whose weights must all come from the checkpoint (the discriminator and MANO
# buffers may be absent or differ; HaMeR itself loads with strict=False).
_TRAINED = ("backbone.", "mano_head.")


@dataclass(frozen=True)
class HamerSettings:
    """What the crops and the camera take from the checkpoint's config (release values)."""

    image_size: int = 256  # MODEL.IMAGE_SIZE
    bbox_shape: tuple[int, int] = (192, 256)  # MODEL.BBOX_SHAPE: width, height of the ViT's view
    focal_length: float = 5000.0  # EXTRA.FOCAL_LENGTH, for a crop of image_size pixels
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # MODEL.IMAGE_MEAN (RGB, 0..1)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)  # MODEL.IMAGE_STD

    @classmethod
    def from_config(cls, cfg: Any) -> HamerSettings:
        model = cfg.MODEL
        return cls(
            image_size=int(model.IMAGE_SIZE),
            bbox_shape=tuple(int(v) for v in model.BBOX_SHAPE),
            focal_length=float(cfg.EXTRA.FOCAL_LENGTH),
            mean=tuple(float(v) for v in model.IMAGE_MEAN),
            std=tuple(float(v) for v in model.IMAGE_STD),
        )

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        """HaMeR's full-image camera: nearly orthographic (about 2.9 degrees at 720x480)."""
        focal = self.focal_length / self.image_size * max(width, height)
        return Intrinsics(focal, focal, width / 2 - 0.5, height / 2 - 0.5, width, height)


@dataclass
class HamerNetwork:
    """A HaMeR-like module (batch {"img": (B,3,S,S)} -> outputs named as HaMeR names them), the
    settings its crops need, and the (left, right) faces its meshes are rendered with."""

    module: Any
    settings: HamerSettings
    faces: tuple[np.ndarray, np.ndarray] | None = None
    device: str = "cpu"

    def __call__(self, images: np.ndarray) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            out = self.module({"img": torch.from_numpy(images).to(self.device)})
        return {k: _numpy(v) for k, v in out.items()}


@dataclass(frozen=True)
class Crop:
    frame: int
    side: int  # 0 left (cropped mirrored), 1 right
    center: np.ndarray  # (2,) float32 corner-origin pixels, as HaMeR's box_center
    size: float  # side of the square crop in pixels, as HaMeR's box_size


def crop_for(
    frame: int, side: int, keypoints_px: np.ndarray, settings: HamerSettings = HamerSettings()
) -> Crop:
    """HaMeR's crop of one hand from its 21 landmarks (our pixel-centre coordinates), in the
    number types `ViTDetDataset` computes it in, so the patch is HaMeR's to the bit."""
    corner = keypoints_px.astype(np.float64) + 0.5
    box = np.concatenate([corner.min(axis=0), corner.max(axis=0)]).astype(np.float32)
    center = (box[2:] + box[:2]) / 2.0
    w, h = RESCALE * (box[2:] - box[:2]) / 200.0 * 200
    target_w, target_h = settings.bbox_shape
    if h / w < target_h / target_w:
        h = max(w * target_h / target_w, h)
    else:
        w = max(h * target_w / target_h, w)
    return Crop(frame, side, center, float(np.array([w, h]).max()))


def crop_image(
    image: np.ndarray, crop: Crop, settings: HamerSettings = HamerSettings()
) -> np.ndarray:
    """The normalised (3,S,S) float32 RGB patch HaMeR's backbone expects; left hands mirrored.

    As `ViTDetDataset`: a box more than 2.2x the patch blurs the frame first (skimage's
    `gaussian` is scipy's filter with these defaults), the box centre maps onto the patch centre
    as a pixel index, and a left hand's frame is mirrored about x -> W - 1 - x."""
    import cv2

    size = settings.image_size
    downsampling = crop.size / size / 2.0
    if downsampling > 1.1:
        from scipy.ndimage import gaussian_filter

        sigma = (downsampling - 1) / 2
        image = gaussian_filter(
            image.astype(np.float64), (sigma, sigma, 0), mode="nearest", truncate=4.0
        )
    cx, cy = crop.center
    if crop.side == 0:
        image = image[:, ::-1]
        cx = image.shape[1] - cx - 1
    half = crop.size * 0.5
    src = np.array([[cx, cy], [cx, cy + half], [cx + half, cy]], np.float32)
    dst = np.array([[size / 2, size / 2], [size / 2, size], [size, size / 2]], np.float32)
    patch = cv2.warpAffine(
        image,
        cv2.getAffineTransform(src, dst),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    patch = patch.transpose(2, 0, 1).astype(np.float32)
    mean = (255.0 * np.array(settings.mean)).astype(np.float32)[:, None, None]
    std = (255.0 * np.array(settings.std)).astype(np.float32)[:, None, None]
    return (patch - mean) / std


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
    network: HamerNetwork, frames: np.ndarray, landmarks: HandTrack, batch_size: int = 8
) -> HandTrack:
    """Run `network` on every valid hand of `landmarks` (boxes from its pixels) and return the
    track in HaMeR's full-image camera, with vertices and MANO parameters (axis-angle)."""
    from scipy.spatial.transform import Rotation

    settings = network.settings
    height, width = frames.shape[1:3]
    intrinsics = settings.intrinsics(width, height)
    track = HandTrack.empty(landmarks.frames, with_vertices=778)
    track.scores = landmarks.scores
    track.mano = {
        "global_orient": np.full((track.frames, 2, 3), np.nan, np.float32),
        "hand_pose": np.full((track.frames, 2, 45), np.nan, np.float32),
        "betas": np.full((track.frames, 2, 10), np.nan, np.float32),
    }
    crops = [
        crop_for(f, s, landmarks.keypoints_px[f, s], settings)
        for f, s in zip(*np.nonzero(landmarks.valid), strict=True)
    ]
    for batch in _batches(crops, batch_size):
        out = network(np.stack([crop_image(frames[c.frame], c, settings) for c in batch]))
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
    """The files a HaMeR run needs, or a MissingAssetError naming the first one missing.

    The config sits two folders above the checkpoint (as HaMeR's `load_hamer` reads it) and its
    MANO paths are relative to the `_DATA` folder holding `hamer_ckpts/` (HaMeR's ./_DATA)."""
    if root is None and checkpoint is None:
        raise MissingAssetError("HaMeR folder", "nowhere (no --hamer-dir given)", HOW_TO_GET_HAMER)
    if checkpoint is None:
        ckpt_dir = Path(root) / "_DATA" / "hamer_ckpts" / "checkpoints"
        found = (ckpt_dir / n for n in CHECKPOINTS if (ckpt_dir / n).is_file())
        checkpoint = next(found, ckpt_dir / CHECKPOINTS[1])
    checkpoint = Path(checkpoint)
    files = {
        "checkpoint": checkpoint,
        "model_config": checkpoint.parent.parent / "model_config.yaml",
    }
    _require_files(files)
    import yaml

    mano = yaml.safe_load(files["model_config"].read_text()).get("MANO", {})
    data = checkpoint.parent.parent.parent
    files["mano_right"] = data / mano.get("MODEL_PATH", "data/mano") / "MANO_RIGHT.pkl"
    files["mano_mean"] = data / mano.get("MEAN_PARAMS", "data/mano_mean_params.npz")
    _require_files(files)
    return files


def _require_files(files: dict[str, Path]) -> None:
    for name, path in files.items():
        if not path.is_file():
            raise MissingAssetError(
                f"HaMeR {name.replace('_', ' ')} ({path.name})", str(path.parent), HOW_TO_GET_HAMER
            )


def check_hamer(root: Path | str | None, checkpoint: Path | str | None = None) -> None:
    """Before any clip: the files are there and `hamer.models` imports."""
    hamer_files(root, checkpoint)
    import_hamer(root)


def import_hamer(root: Path | str | None) -> ModuleType:
    """`hamer.models`: the installed package, else the one in the `--hamer-dir` clone."""
    package = Path(root).resolve() / "hamer" if root is not None else None
    if importlib.util.find_spec("hamer") is None and package and package.is_dir():
        sys.path.insert(0, str(package.parent))
    looked = f"this environment and {package}" if package else "this environment"
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the clone may be shared or read-only: leave it as found
    try:
        _import_torchvision()
        return importlib.import_module("hamer.models")
    except ImportError as exc:
        raise MissingAssetError(
            f"HaMeR python package 'hamer' ({exc})", looked, HOW_TO_INSTALL_HAMER
        ) from exc
    finally:
        sys.dont_write_bytecode = writes_bytecode


# PyPI's Linux torchvision wheels are CUDA builds. Beside a CPU torch their C++ ops do not load,
# and 0.28 then fails at import ("operator torchvision::nms does not exist"), which breaks every
# package that imports torchvision when it is installed (transformers does). `make setup` so
# keeps it out of site-packages, in this folder, which only HaMeR's import puts on the path.
PRIVATE_TORCHVISION = Path(sys.prefix) / "hamer-torchvision"
_TORCHVISION_OPS: Any = None  # keeps the declared op schemas alive


def _import_torchvision() -> None:
    """torchvision, which HaMeR and timm import but whose C++ ops HaMeR's network never calls.

    Without its ops torchvision works (an op raises when called), except that 0.28 declares
    fake kernels for `nms` and `qnms` unguarded. Declaring those two schemas, with no kernel,
    lets the pure-Python part import; calling either op still fails as it would without them."""
    global _TORCHVISION_OPS
    if importlib.util.find_spec("torchvision") is None and PRIVATE_TORCHVISION.is_dir():
        sys.path.append(str(PRIVATE_TORCHVISION))
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc) or _TORCHVISION_OPS is not None:
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        import torch

        _TORCHVISION_OPS = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _TORCHVISION_OPS.define(
                f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        import torchvision  # noqa: F401, F811


def load_hamer(
    root: Path | str | None, checkpoint: Path | str | None, device: str = "cpu"
) -> HamerNetwork:
    """The user's HaMeR network, built as HaMeR's `load_hamer` builds it but without its two
    failures on a current stack: Lightning's loader reads the checkpoint with torch's default
    `weights_only=True`, which refuses the yacs `CfgNode` in its hyper-parameters (the file is
    the user's own, so it is read in full here), and smplx unpickles MANO_RIGHT.pkl itself,
    which needs chumpy (a chumpy-free copy in the user's cache is given instead). No renderer
    is made (it would open a GL context at load)."""
    from dwm_data.hands.mano import plain_mano_folder

    files = hamer_files(root, checkpoint)
    models = import_hamer(root)
    import torch
    from hamer.configs import get_config
    from hamer.utils.renderer import Renderer

    cfg = get_config(str(files["model_config"]), update_cachedir=False)
    cfg.defrost()
    cfg.MANO.MODEL_PATH = str(plain_mano_folder(files["mano_right"]))
    cfg.MANO.MEAN_PARAMS = str(files["mano_mean"])
    if cfg.MODEL.BACKBONE.TYPE == "vit" and "BBOX_SHAPE" not in cfg.MODEL:
        cfg.MODEL.BBOX_SHAPE = [192, 256]  # as HaMeR's load_hamer
    cfg.MODEL.BACKBONE.pop("PRETRAINED_WEIGHTS", None)  # the checkpoint holds the backbone
    cfg.freeze()
    model = models.HAMER(cfg, init_renderer=False)
    stored = torch.load(files["checkpoint"], map_location="cpu", weights_only=False)
    missing = model.load_state_dict(stored["state_dict"], strict=False).missing_keys
    untrained = [k for k in missing if k.startswith(_TRAINED)]
    if untrained:
        raise DwmDataError(
            f"{files['checkpoint']} is not a HaMeR checkpoint for {files['model_config'].name}: "
            f"it lacks {len(untrained)} network weights (first: {untrained[0]})"
        )
    renderer = Renderer(cfg, faces=model.mano.faces)  # HaMeR's faces, the wrist closed
    faces = (np.asarray(renderer.faces_left, np.int64), np.asarray(renderer.faces, np.int64))
    return HamerNetwork(model.to(device).eval(), HamerSettings.from_config(cfg), faces, device)
