"""HaMeR's own hand detection: person boxes, then ViTPose whole-body keypoints, hands from those.

HaMeR's demo (and DWM's "original" backend) finds people with detectron2's ViTDet, runs
ViTPose-H whole-body (mmpose on mmcv 1.3.9) in each person box and takes a hand where more than
3 of its 21 keypoints have confidence over 0.5, boxed by those keypoints. Neither detectron2 nor
mmcv has a wheel for this stack, so both run through transformers here:
- ViTPose is the user's own `_DATA/vitpose_ckpts/vitpose+_huge/wholebody.pth` from HaMeR's demo
  data, read in mmpose's layout and renamed in memory into `VitPoseForPoseEstimation` (or a
  transformers-layout ViTPose folder). That file is ViTPose's `tools/model_split.py` output for
  the whole-body task: the ViTPose+ expert of that dataset already concatenated into each
  block's `mlp.fc2`, the other experts and heads dropped, so it is a plain ViT (no MoE keys) with
  the 133-keypoint deconvolution head. Crops and heatmap decoding are transformers'
  `VitPoseImageProcessor` (the top-down affine crop with mmpose's 1.25 padding, UDP/DARK
  decoding: mmpose's unbiased variant, where the whole-body configuration itself crops with the
  plain affine and decodes with the quarter-pixel shift, under a heatmap pixel apart), with the
  configuration's flip test.
- person boxes come from a transformers object detector folder (RT-DETR, e.g. a local copy of
  `PekingU/rtdetr_r50vd`, COCO-trained like ViTDet) at the demo's threshold 0.5 for "person":
  ViTDet needs detectron2, and transformers has no ViTDet detection head to load its weights into.

The keypoints have no metric 3D (MediaPipe's world landmarks): `Detection.world` is None, and
this detector serves the `hamer` backend, which reads only the boxes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.hands.landmarks import Detection, box_iou

WHOLEBODY = Path("_DATA") / "vitpose_ckpts" / "vitpose+_huge" / "wholebody.pth"
WHOLEBODY_KEYPOINTS = 133  # COCO-WholeBody: body 17, feet 6, face 68, left hand 21, right hand 21
HAND_SLICES = {0: slice(-42, -21), 1: slice(-21, None)}  # side -> keypoints, as HaMeR's demo


def _face_pairs() -> list[tuple[int, int]]:
    """Mirror pairs of the 68 face points (the 300-W layout, from 23 in the whole-body list):
    jaw, brows, nostrils, eyes, outer and inner lips; the nose ridge and lip centres are alone."""
    jaw = [(i, 16 - i) for i in range(8)]
    brows = [(17 + i, 26 - i) for i in range(5)]
    nose = [(31, 35), (32, 34)]
    eyes = [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    lips = [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    return [(23 + a, 23 + b) for a, b in jaw + brows + nose + eyes + lips]


# COCO-WholeBody's left/right pairs, for the flip test: body (COCO's), feet, face, hands.
FLIP_PAIRS = (
    [(1 + 2 * i, 2 + 2 * i) for i in range(8)]
    + [(17, 20), (18, 21), (19, 22)]
    + _face_pairs()
    + [(91 + i, 112 + i) for i in range(21)]
)
PERSON_SCORE = 0.5  # demo.py: class 0 with score > 0.5
KEYPOINT_SCORE = 0.5  # a keypoint counts when its confidence is over this
MIN_CONFIDENT = 3  # a hand needs more confident keypoints than this
# DWM's original_extractor: one person's left and right hand on the same hand (IoU and mean
# keypoint distance under this share of the larger box side) keep only the better one.
SAME_HAND_IOU = 0.6
SAME_HAND_DISTANCE = 0.35
# Attention heads are not in the weights: ViTPose's configurations by width (S, B, L, H).
HEADS = {384: 12, 768: 12, 1024: 16, 1280: 16}
IMAGE_SIZE = (256, 192)  # (height, width) of the whole-body configurations
LAYER_NORM_EPS = 1e-6  # ViTPose's ViT: partial(nn.LayerNorm, eps=1e-6)
HOW_TO_GET_VITPOSE = (
    "run HaMeR's fetch_demo_data.sh (hamer_demo_data.tar.gz holds "
    f"{WHOLEBODY.as_posix()}) and pass the clone as --hamer-dir, or pass the file or a "
    "transformers ViTPose whole-body folder as --vitpose"
)
HOW_TO_GET_DETECTOR = (
    "download a transformers person detector, e.g. `huggingface-cli download "
    "PekingU/rtdetr_r50vd --local-dir DIR`, and pass DIR as --detector-dir"
)

# mmpose name -> transformers name, applied in order to each key (the qkv split is apart).
_RENAMES = (
    (r"^backbone\.patch_embed\.proj\.", "backbone.embeddings.patch_embeddings.projection."),
    (r"^backbone\.pos_embed$", "backbone.embeddings.position_embeddings"),
    (r"^backbone\.last_norm\.", "backbone.layernorm."),
    (r"^backbone\.blocks\.(\d+)\.norm1\.", r"backbone.encoder.layer.\1.layernorm_before."),
    (r"^backbone\.blocks\.(\d+)\.norm2\.", r"backbone.encoder.layer.\1.layernorm_after."),
    (
        r"^backbone\.blocks\.(\d+)\.attn\.proj\.",
        r"backbone.encoder.layer.\1.attention.output.dense.",
    ),
    (r"^backbone\.blocks\.(\d+)\.mlp\.", r"backbone.encoder.layer.\1.mlp."),
    (r"^keypoint_head\.deconv_layers\.0\.", "head.deconv1."),
    (r"^keypoint_head\.deconv_layers\.1\.", "head.batchnorm1."),
    (r"^keypoint_head\.deconv_layers\.3\.", "head.deconv2."),
    (r"^keypoint_head\.deconv_layers\.4\.", "head.batchnorm2."),
    (r"^keypoint_head\.final_layer\.", "head.conv."),
)
_QKV = re.compile(r"^backbone\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_DROPPED = re.compile(r"^backbone\.cls_token$")  # in some ViTPose files, never used


def transformers_state_dict(original: dict[str, Any]) -> dict[str, Any]:
    """An mmpose-layout ViTPose state dict renamed for `VitPoseForPoseEstimation`; a key no rule
    covers is kept as it is, so loading it strictly names it."""
    out = {}
    for key, value in original.items():
        if _DROPPED.match(key):
            continue
        qkv = _QKV.match(key)
        if qkv:
            prefix = f"backbone.encoder.layer.{qkv[1]}.attention.attention."
            for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"{prefix}{name}.{qkv[2]}"] = part
            continue
        for pattern, replacement in _RENAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        out[key] = value
    return out


def vitpose_config(original: dict[str, Any]) -> Any:
    """The transformers configuration of an mmpose-layout ViTPose, read from its weights."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig

    if any(".mlp.experts." in key for key in original):
        raise DwmDataError(
            "a ViTPose+ multi-task checkpoint (with experts) is not the whole-body model: split "
            "it with ViTPose's tools/model_split.py and pass its wholebody.pth (HaMeR ships it)"
        )
    hidden = original["backbone.pos_embed"].shape[-1]
    patches = (IMAGE_SIZE[0] // 16) * (IMAGE_SIZE[1] // 16)
    if original["backbone.pos_embed"].shape[1] != patches + 1:
        raise DwmDataError(
            f"a ViTPose for another input size ({original['backbone.pos_embed'].shape[1] - 1} "
            f"patches, the whole-body configurations' 256x192 has {patches})"
        )
    layers = 1 + max(
        int(m[1]) for k in original if (m := re.match(r"backbone\.blocks\.(\d+)\.", k))
    )
    patch = tuple(original["backbone.patch_embed.proj.weight"].shape[-2:])
    if hidden not in HEADS:
        raise DwmDataError(
            f"ViTPose of width {hidden} is not a ViTPose configuration (known: {sorted(HEADS)})"
        )
    backbone = VitPoseBackboneConfig(
        image_size=IMAGE_SIZE,
        patch_size=patch,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=HEADS[hidden],
        mlp_ratio=original["backbone.blocks.0.mlp.fc1.weight"].shape[0] // hidden,
        qkv_bias="backbone.blocks.0.attn.qkv.bias" in original,
        layer_norm_eps=LAYER_NORM_EPS,
        out_indices=[layers],
    )
    return VitPoseConfig(
        backbone_config=backbone,
        num_labels=original["keypoint_head.final_layer.weight"].shape[0],
        use_simple_decoder="keypoint_head.deconv_layers.0.weight" not in original,
    )


def load_vitpose(path: Path, device: str = "cpu") -> Any:
    """`VitPoseForPoseEstimation` from an mmpose checkpoint (converted in memory, every weight
    required) or a transformers folder; a model without the 133 whole-body keypoints is refused."""
    import torch
    from transformers import VitPoseForPoseEstimation

    if path.is_dir():
        model = VitPoseForPoseEstimation.from_pretrained(path)
    else:
        # mmpose's checkpoint meta is not all tensors; the file is the user's own (as HaMeR's)
        stored = torch.load(path, map_location="cpu", weights_only=False)
        original = stored.get("state_dict", stored)
        model = VitPoseForPoseEstimation(vitpose_config(original))
        try:
            model.load_state_dict(transformers_state_dict(original), strict=True)
        except RuntimeError as exc:  # torch lists every key: the first says enough
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            raise DwmDataError(f"{path}: not ViTPose in mmpose's layout ({first})") from exc
    if model.config.num_labels != WHOLEBODY_KEYPOINTS:
        raise DwmDataError(
            f"{path}: ViTPose with {model.config.num_labels} keypoints, not the "
            f"{WHOLEBODY_KEYPOINTS} of COCO-WholeBody (whose last 42 are the hands)"
        )
    return model.to(device).eval()


def vitpose_path(hamer_dir: Path | str | None, vitpose: Path | str | None) -> Path:
    """The ViTPose weights: --vitpose, else HaMeR's demo data under --hamer-dir; or one line."""
    if vitpose is not None:
        path = Path(vitpose)
        if path.is_file() or (path / "config.json").is_file():
            return path
        raise MissingAssetError("ViTPose whole-body weights", str(path), HOW_TO_GET_VITPOSE)
    if hamer_dir is None:
        raise MissingAssetError(
            "ViTPose whole-body weights (wholebody.pth)",
            "nowhere (no --hamer-dir or --vitpose given)",
            HOW_TO_GET_VITPOSE,
        )
    path = Path(hamer_dir) / WHOLEBODY
    if not path.is_file():
        raise MissingAssetError(
            "ViTPose whole-body weights (wholebody.pth)", str(path.parent), HOW_TO_GET_VITPOSE
        )
    return path


def detector_path(detector_dir: Path | str | None) -> Path:
    if detector_dir is None:
        raise MissingAssetError(
            "person detector folder", "nowhere (no --detector-dir given)", HOW_TO_GET_DETECTOR
        )
    path = Path(detector_dir)
    for name in ("config.json", "preprocessor_config.json"):
        if not (path / name).is_file():
            raise MissingAssetError(f"person detector {name}", str(path), HOW_TO_GET_DETECTOR)
    return path


def check_vitpose(
    hamer_dir: Path | str | None, vitpose: Path | str | None, detector_dir: Path | str | None
) -> None:
    """At plan time: both models' files are there and transformers imports."""
    from dwm_data.extras import require

    vitpose_path(hamer_dir, vitpose)
    detector_path(detector_dir)
    require("transformers", "hamer")


class VitPoseHands:
    """Hands as HaMeR's demo finds them, with `MediaPipeHands`' interface: per frame, at most
    one hand per side, 21 keypoints in OpenPose order (the whole-body hand layout is that order)."""

    def __init__(
        self,
        hamer_dir: Path | str | None = None,
        vitpose: Path | str | None = None,
        detector_dir: Path | str | None = None,
        device: str = "cpu",
    ):
        from transformers import (
            AutoImageProcessor,
            AutoModelForObjectDetection,
            VitPoseImageProcessorPil,
        )

        weights = vitpose_path(hamer_dir, vitpose)
        folder = detector_path(detector_dir)
        self.device = device
        self.pose = load_vitpose(weights, device)
        # the PIL processor (transformers' torchvision one needs a torchvision this stack lacks),
        # cropping to the model's input size
        height, width = self.pose.config.backbone_config.image_size
        self.pose_processor = VitPoseImageProcessorPil(size={"height": height, "width": width})
        self.detector = AutoModelForObjectDetection.from_pretrained(folder).to(device).eval()
        self.detector_processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
        self.name = f"vitpose-wholebody+{self.detector.config.model_type}"
        labels = self.detector.config.id2label
        self.person = [int(i) for i, name in labels.items() if str(name).lower() == "person"]
        if not self.person:
            raise DwmDataError(f"{folder}: the detector has no 'person' class (labels: {labels})")

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Per frame: people, their whole-body keypoints, their hands; the best hand per side."""
        found = []
        for frame in frames:
            hands = [
                h for body in self.wholebody(frame, self.people(frame)) for h in person_hands(body)
            ]
            found.append(best_per_side(hands))
        return found

    def people(self, frame: np.ndarray) -> np.ndarray:
        """(N, 4) person boxes (x0, y0, x1, y1, image-corner pixels) scoring over 0.5."""
        import torch

        inputs = self.detector_processor(images=frame, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.detector(**inputs)
        (result,) = self.detector_processor.post_process_object_detection(
            out, threshold=PERSON_SCORE, target_sizes=[frame.shape[:2]]
        )
        keep = np.isin(result["labels"].cpu().numpy(), self.person)
        return result["boxes"].cpu().numpy()[keep].astype(np.float64)

    def wholebody(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 133, 3) keypoints (x, y, confidence) of the people in `boxes`, pixel centres at
        integers (ViTPose's unbiased coordinates, as `cameras.Intrinsics` counts)."""

        if len(boxes) == 0:
            return np.zeros((0, WHOLEBODY_KEYPOINTS, 3))
        # mmpose 0.x turns the detector's (x0, y0, x1, y1) into (x, y, x1 - x0 + 1, y1 - y0 + 1)
        coco = [[np.r_[b[:2], b[2:] - b[:2] + 1].tolist() for b in boxes]]
        inputs = self.pose_processor(images=frame, boxes=coco, return_tensors="pt")
        (people,) = self.pose_processor.post_process_pose_estimation(
            flip_tested(self.pose, inputs["pixel_values"].to(self.device)), boxes=coco
        )
        return np.stack(
            [np.c_[p["keypoints"].numpy(), p["scores"].numpy()] for p in people]
        ).astype(np.float64)


def flip_tested(model: Any, pixels: Any) -> Any:
    """ViTPose's output with the flip test its configurations ask for: the mean of the crop's
    heatmaps and the mirrored crop's, mirrored back with left and right swapped (the unbiased
    crop and decoding need no one-pixel shift of the mirrored heatmaps)."""
    import torch
    from transformers.models.vitpose.modeling_vitpose import VitPoseEstimatorOutput

    with torch.no_grad():
        heatmaps = model(pixels).heatmaps
        pairs = torch.tensor(FLIP_PAIRS, device=pixels.device)
        mirrored = model(pixels.flip(3), flip_pairs=pairs).heatmaps
    return VitPoseEstimatorOutput(heatmaps=(heatmaps + mirrored) * 0.5)


def person_hands(keypoints: np.ndarray) -> list[Detection]:
    """One person's hands from its (133, 3) whole-body keypoints, as HaMeR's demo takes them:
    a hand with more than 3 keypoints over 0.5, scored by their mean confidence (DWM's original
    extractor). Unconfident keypoints are clamped into the confident ones' box, so the landmark
    extent the `hamer` backend boxes is the demo's box; a left and right hand on the same hand
    keep only the better one."""
    hands = []
    for side, part in HAND_SLICES.items():
        hand = keypoints[part]
        confident = hand[:, 2] > KEYPOINT_SCORE
        if confident.sum() <= MIN_CONFIDENT:
            continue
        low, high = hand[confident, :2].min(axis=0), hand[confident, :2].max(axis=0)
        pixels = np.clip(hand[:, :2], low, high)
        hands.append(Detection(side, float(hand[confident, 2].mean()), pixels))
    if len(hands) == 2 and _same_hand(*hands):
        return [max(hands, key=lambda d: (d.score, d.side))]
    return hands


def _same_hand(left: Detection, right: Detection) -> bool:
    if box_iou(left.box, right.box) < SAME_HAND_IOU:
        return False
    side = max(float(np.max(d.box[2:] - d.box[:2])) for d in (left, right))
    distance = float(np.linalg.norm(left.pixels - right.pixels, axis=1).mean())
    return distance <= SAME_HAND_DISTANCE * max(side, 1.0)


def best_per_side(hands: list[Detection]) -> list[Detection]:
    """The most confident hand per side (several people may be in view; the track has one)."""
    best: dict[int, Detection] = {}
    for hand in hands:
        if hand.side not in best or hand.score > best[hand.side].score:
            best[hand.side] = hand
    return [best[s] for s in sorted(best)]
