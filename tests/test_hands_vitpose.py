"""HaMeR's own detection (person boxes, ViTPose whole-body hands) against its references: the
mmpose-layout `wholebody.pth` converted into transformers' ViTPose gives the heatmaps of
ViTPose's own ViT (HaMeR's copy of it, with mmpose's deconvolution head); keypoints are
`VitPoseImageProcessor`'s; the hands are taken as HaMeR's demo takes them; missing files are one
line at plan time; the `hamer` backend runs on these hands end to end.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hamer_release import HAMER_SOURCE, small_backbone, write_release

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.fixtures.vitpose import (
    DEPTH,
    PART_FEATURES,
    TASKS,
    WHOLEBODY_EXPERT,
    WIDTH,
    multitask_state_dict,
    split_wholebody,
    wholebody_state_dict,
    write_person_detector,
    write_wholebody,
)
from dwm_data.hands.backend import (
    HamerBackend,
    check_estimation,
    estimate_hands,
    landmark_track,
)
from dwm_data.hands.follow import follow_lost_hands
from dwm_data.hands.landmarks import Detection
from dwm_data.hands.options import HandEstimationOptions
from dwm_data.hands.track import HandTrack
from dwm_data.hands.vitpose import (
    FLIP_PAIRS,
    HOW_TO_GET_DETECTOR,
    VitPoseHands,
    best_per_side,
    flip_tested,
    load_vitpose,
    person_hands,
    transformers_state_dict,
    vitpose_config,
    vitpose_path,
)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(hamer_dir holding _DATA/vitpose_ckpts/vitpose+_huge/wholebody.pth, detector folder)."""
    root = tmp_path_factory.mktemp("vitpose")
    write_wholebody(root / "hamer")
    return root / "hamer", write_person_detector(root / "rtdetr")


@pytest.fixture(scope="module")
def hands(files):
    return VitPoseHands(files[0], None, files[1])


def _frames(count: int, height: int = 120, width: int = 160) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (count, height // 8, width // 8, 3), dtype=np.uint8)
    return np.stack([cv2.resize(n, (width, height), interpolation=cv2.INTER_CUBIC) for n in noise])


# --- the checkpoint: mmpose's layout into transformers' ViTPose ---------------------------------


def _vitposes_own_network():
    """ViTPose's architecture in mmpose's module names: its ViT (HaMeR's `ViT` is ViTPose's
    backbone, imported from ../shared/third_party/hamer) and TopdownHeatmapSimpleHead's layers
    (two 4x4 stride-2 deconvolutions without bias, BatchNorm, ReLU; a 1x1 final conv)."""
    if not (HAMER_SOURCE / "hamer" / "__init__.py").is_file():
        message = f"HaMeR source missing: {HAMER_SOURCE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from torch import nn

    from dwm_data.hands.hamer import import_hamer

    import_hamer(HAMER_SOURCE)
    from hamer.models.backbones.vit import ViT

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for channels in (WIDTH, 256):
                layers += [
                    nn.ConvTranspose2d(channels, 256, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(256),
                    nn.ReLU(inplace=True),
                ]
            self.deconv_layers = nn.Sequential(*layers)
            self.final_layer = nn.Conv2d(256, 133, kernel_size=1)

        def forward(self, x):
            return self.final_layer(self.deconv_layers(x))

    class TopDown(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ViT(img_size=(256, 192), patch_size=16, embed_dim=WIDTH, depth=DEPTH,
                                num_heads=12, ratio=1, mlp_ratio=4, qkv_bias=True)  # fmt: skip
            self.keypoint_head = Head()

        def forward(self, x):
            return self.keypoint_head(self.backbone(x))

    return TopDown().eval()


def test_wholebody_converts_to_vitposes_own_heatmaps(files, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # ../shared stays as it is
    theirs = _vitposes_own_network()
    stored = torch.load(vitpose_path(files[0], None), weights_only=False)
    assert set(stored) == {"meta", "state_dict"}
    theirs.load_state_dict(stored["state_dict"], strict=True)  # the fixture's keys are mmpose's
    ours = load_vitpose(vitpose_path(files[0], None))
    loaded = ours.load_state_dict(transformers_state_dict(stored["state_dict"]), strict=False)
    assert (loaded.missing_keys, loaded.unexpected_keys) == ([], [])
    config = ours.config
    assert (config.num_labels, config.use_simple_decoder) == (133, False)
    assert config.backbone_config.num_attention_heads == 12
    pixels = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(pixels)
        got = ours(pixels).heatmaps
    assert got.shape == (2, 133, 64, 48)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_wholebody_pth_is_vitpose_plus_whole_body_expert(files):
    """The split file against the multi-task checkpoint it comes from, run by transformers' own
    mixture of experts (`num_experts`, `part_features`, `dataset_index` picking the task): the
    whole-body expert and head give the same heatmaps as the plain model of the split file."""
    from transformers import VitPoseForPoseEstimation

    multitask = multitask_state_dict()
    assert sum(".experts." in k for k in multitask) == 2 * DEPTH * len(TASKS)
    assert not any(".experts." in k or "associate" in k for k in split_wholebody(multitask))
    head = f"associate_keypoint_heads.{WHOLEBODY_EXPERT - 1}."
    wholebody = {k: v for k, v in multitask.items() if k.startswith("backbone.")}
    wholebody |= {
        "keypoint_head." + k.removeprefix(head): v
        for k, v in multitask.items()
        if k.startswith(head)
    }
    config = vitpose_config(split_wholebody(multitask))
    config.backbone_config.num_experts = len(TASKS)
    config.backbone_config.part_features = PART_FEATURES
    moe = VitPoseForPoseEstimation(config).eval()
    moe.load_state_dict(transformers_state_dict(wholebody), strict=True)
    plain = load_vitpose(vitpose_path(files[0], None))
    pixels = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = moe(pixels, dataset_index=torch.full((2,), WHOLEBODY_EXPERT)).heatmaps
        other_task = moe(pixels, dataset_index=torch.zeros(2, dtype=torch.long)).heatmaps
        got = plain(pixels).heatmaps
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, other_task, atol=1e-3)  # the expert matters


def test_a_transformers_folder_loads_the_same(files, tmp_path):
    ours = load_vitpose(vitpose_path(files[0], None))
    ours.save_pretrained(tmp_path / "vitpose-wholebody")
    again = load_vitpose(vitpose_path(None, tmp_path / "vitpose-wholebody"))
    pixels = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        torch.testing.assert_close(again(pixels).heatmaps, ours(pixels).heatmaps)


def test_checkpoints_that_are_not_the_wholebody_model_are_refused(tmp_path):
    state = wholebody_state_dict()
    with pytest.raises(DwmDataError, match="model_split.py"):
        vitpose_config(multitask_state_dict())  # ViTPose+ before the split
    body = dict(state)
    body["keypoint_head.final_layer.weight"] = body["keypoint_head.final_layer.weight"][:17]
    body["keypoint_head.final_layer.bias"] = body["keypoint_head.final_layer.bias"][:17]
    torch.save({"state_dict": body}, tmp_path / "coco.pth")
    with pytest.raises(DwmDataError, match="17 keypoints, not the 133"):
        load_vitpose(tmp_path / "coco.pth")
    torn = {k: v for k, v in state.items() if k != "backbone.blocks.0.norm1.bias"}
    torch.save({"state_dict": torn}, tmp_path / "torn.pth")
    with pytest.raises(DwmDataError, match="not ViTPose in mmpose's layout.*layernorm_before") as e:
        load_vitpose(tmp_path / "torn.pth")
    assert "\n" not in str(e.value)
    small = dict(state, **{"backbone.pos_embed": state["backbone.pos_embed"][:, :97]})
    with pytest.raises(DwmDataError, match="96 patches"):
        vitpose_config(small)


# --- detection: boxes, crops and decoding as transformers', hands as HaMeR's demo ---------------


def _processors_detections(detector: VitPoseHands, frame: np.ndarray) -> dict:
    with torch.no_grad():
        out = detector.detector(**detector.detector_processor(images=frame, return_tensors="pt"))
    (result,) = detector.detector_processor.post_process_object_detection(
        out, threshold=0.5, target_sizes=[frame.shape[:2]]
    )
    return result


def test_people_are_the_detectors_person_boxes_over_half(files, hands, tmp_path):
    """The processor's own detections over 0.5, of the class named "person" only."""
    import json

    frame = _frames(1)[0]
    result = _processors_detections(hands, frame)
    assert len(result["boxes"]) and (result["labels"] == 0).all()
    assert hands.name == "vitpose-wholebody+rt_detr"  # what a sample's json records
    np.testing.assert_allclose(hands.people(frame), result["boxes"].numpy(), rtol=1e-6)
    folder = write_person_detector(tmp_path / "rtdetr")  # the same, its class 0 named "cup"
    config = json.loads((folder / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "cup", "1": "person"}, {"cup": 0, "person": 1}
    (folder / "config.json").write_text(json.dumps(config))
    renamed = VitPoseHands(files[0], None, folder)
    assert renamed.person == [1] and len(_processors_detections(renamed, frame)["boxes"])
    assert renamed.people(frame).shape == (0, 4)


def test_keypoints_are_vitpose_image_processors(hands):
    """The crop and decoding are transformers' (mmpose's top-down affine and UDP/DARK), on the
    box mmpose makes of the detector's corners: (x0, y0, x1 - x0 + 1, y1 - y0 + 1)."""
    from transformers import VitPoseImageProcessorPil

    frame = _frames(1)[0]
    boxes = np.array([[20.0, 10.0, 90.0, 110.0], [70.5, 30.25, 150.0, 100.0]])
    processor = VitPoseImageProcessorPil()
    coco = [[[20.0, 10.0, 71.0, 101.0], [70.5, 30.25, 80.5, 70.75]]]
    inputs = processor(images=frame, boxes=coco, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 256, 192)
    pixels = inputs["pixel_values"]
    pairs = torch.tensor(FLIP_PAIRS)
    with torch.no_grad():  # the flip test, as the conversion script of transformers runs it
        out = hands.pose(pixels)
        out.heatmaps = (out.heatmaps + hands.pose(pixels.flip(3), flip_pairs=pairs).heatmaps) / 2
    expected = processor.post_process_pose_estimation(out, boxes=coco)[0]
    got = hands.wholebody(frame, boxes)
    assert got.shape == (2, 133, 3)
    for person, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(person[:, :2], theirs["keypoints"].numpy(), rtol=1e-6)
        np.testing.assert_allclose(person[:, 2], theirs["scores"].numpy(), rtol=1e-6)
    assert hands.wholebody(frame, np.zeros((0, 4))).shape == (0, 133, 3)


def test_flip_pairs_are_coco_wholebodys():
    flat = [i for pair in FLIP_PAIRS for i in pair]
    assert len(flat) == len(set(flat)) and max(flat) == 132  # each keypoint in one pair at most
    assert FLIP_PAIRS[:8] == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
    assert FLIP_PAIRS[-21:] == [(91 + i, 112 + i) for i in range(21)]  # left hand <-> right hand
    alone = sorted(set(range(133)) - set(flat))  # nose; face: chin, nose ridge and tip, lip centres
    assert alone == [0, 23 + 8, 23 + 27, 23 + 28, 23 + 29, 23 + 30, 23 + 33, 23 + 51, 23 + 57,
                     23 + 62, 23 + 66]  # fmt: skip


def test_the_flip_test_is_mirror_symmetric(hands):
    """A mirrored crop gives the mirrored heatmaps with left and right swapped, exactly."""
    pixels = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(2))
    heatmaps = flip_tested(hands.pose, pixels).heatmaps
    mirrored = flip_tested(hands.pose, pixels.flip(3)).heatmaps
    swap = list(range(133))
    for a, b in FLIP_PAIRS:
        swap[a], swap[b] = b, a
    torch.testing.assert_close(mirrored, heatmaps[:, swap].flip(3), rtol=1e-5, atol=1e-6)


def _body(left_confident: int, right_confident: int, seed: int = 0) -> np.ndarray:
    """133 whole-body keypoints: a confident body and face, hands with the given number of
    keypoints over 0.5 (the rest at 0.3), the right hand 60 px right of the left."""
    rng = np.random.default_rng(seed)
    body = np.c_[rng.uniform(0, 200, (133, 2)), np.full(133, 0.9)]
    for start, count, x in ((91, left_confident, 20.0), (112, right_confident, 80.0)):
        body[start : start + 21, :2] = rng.uniform([x, 50], [x + 30, 90], (21, 2))
        body[start : start + 21, 2] = 0.3
        body[start : start + count, 2] = rng.uniform(0.6, 1.0, count)
    return body


def test_hands_are_the_whole_body_layouts_last_42_keypoints():
    body = _body(21, 21)
    left, right = person_hands(body)
    assert (left.side, right.side) == (0, 1) and left.world is None
    np.testing.assert_array_equal(left.pixels, body[-42:-21, :2])
    np.testing.assert_array_equal(right.pixels, body[-21:, :2])
    assert left.score == pytest.approx(body[-42:-21, 2].mean())


def test_a_hand_needs_more_than_three_confident_keypoints():
    assert [d.side for d in person_hands(_body(4, 3))] == [0]
    assert [d.side for d in person_hands(_body(3, 4))] == [1]
    assert person_hands(_body(3, 3)) == []
    (left,) = person_hands(_body(4, 0))
    confident = _body(4, 0)[91:95]
    # the box HaMeR's demo makes: the extent of the confident keypoints only
    np.testing.assert_allclose(
        left.box, np.r_[confident[:, :2].min(0), confident[:, :2].max(0)], rtol=0, atol=0
    )
    assert left.score == pytest.approx(confident[:, 2].mean())


def test_a_left_and_right_hand_on_the_same_hand_keep_the_better():
    body = _body(21, 21)
    body[-21:, :2] = body[-42:-21, :2] + 1.0  # ViTPose put both hands on one
    body[-21:, 2] = 0.99
    (kept,) = person_hands(body)
    assert kept.side == 1


def test_several_people_give_the_best_hand_per_side():
    first = person_hands(_body(21, 5, seed=1))
    second = person_hands(_body(21, 21, seed=2))
    kept = best_per_side(first + second)
    assert [d.side for d in kept] == [0, 1]
    assert kept[1] is second[1]
    assert kept[0].score == max(first[0].score, second[0].score)


def test_a_2d_detectors_hands_are_tracked_and_followed_without_metric_3d(hands):
    """No world landmarks: the camera keypoints stay NaN through the track and the flow."""
    from dwm_data.cameras import Intrinsics

    intrinsics = Intrinsics(150.0, 150.0, 79.5, 59.5, 160, 120)
    frames = _frames(1)
    frames = np.stack([frames[0], np.roll(frames[0], 3, axis=1)])
    pixels = np.stack(np.meshgrid(np.linspace(60, 90, 7), np.linspace(40, 60, 3)), -1)

    class Still:
        def detect(self, clip):
            return [[Detection(1, 0.9, pixels.reshape(-1, 2))], []]

    track = landmark_track(frames, Still(), intrinsics)
    assert track.valid[0, 1] and np.isnan(track.keypoints_cam[0, 1]).all()
    assert follow_lost_hands(frames, track, intrinsics) == 1
    np.testing.assert_allclose(
        track.keypoints_px[1, 1], track.keypoints_px[0, 1] + [3, 0], atol=0.3
    )
    assert np.isnan(track.keypoints_cam[1, 1]).all()


# --- plan time: missing files and pairs, one line each ------------------------------------------


def _options(**fields) -> HandEstimationOptions:
    return HandEstimationOptions(hand_detector="vitpose", **fields)


def test_missing_files_are_one_line_each(files, tmp_path):
    hamer_dir, detector = files
    failures = {
        "no --hamer-dir or --vitpose": lambda: vitpose_path(None, None),
        "vitpose\\+_huge": lambda: vitpose_path(tmp_path, None),
        "fetch_demo_data.sh": lambda: vitpose_path(None, tmp_path / "nothing.pth"),
    }
    for match, call in failures.items():
        with pytest.raises(MissingAssetError, match=match) as error:
            call()
        assert "\n" not in str(error.value)
    from dwm_data.hands.vitpose import check_vitpose

    with pytest.raises(MissingAssetError, match="no --detector-dir.*PekingU/rtdetr_r50vd"):
        check_vitpose(hamer_dir, None, None)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(MissingAssetError, match="preprocessor_config.json") as error:
        check_vitpose(hamer_dir, None, tmp_path / "half")
    assert "\n" not in str(error.value) and HOW_TO_GET_DETECTOR in str(error.value)
    check_vitpose(hamer_dir, None, detector)


def test_plan_refuses_vitpose_without_hamer_in_one_line(files):
    hamer_dir, detector = files
    for backend in ("mano-fit", "mediapipe"):
        options = _options(backend=backend, hamer_dir=str(hamer_dir), detector_dir=str(detector))
        with pytest.raises(DwmDataError, match="2D hand keypoints only.*--hands hamer") as error:
            check_estimation(options, "build-taste", detector=True)
        assert "\n" not in str(error.value)


# --- end to end: the hamer backend on ViTPose's hands -------------------------------------------


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    if not (HAMER_SOURCE / "hamer" / "__init__.py").is_file():
        message = f"HaMeR source missing: {HAMER_SOURCE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for module in ("pytorch_lightning", "yacs", "einops", "skimage"):
        pytest.importorskip(module)
    from dwm_data.hands.hamer import import_hamer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(sys, "dont_write_bytecode", True)
        import_hamer(HAMER_SOURCE)
        import hamer.models.hamer

        patch.setattr(hamer.models.hamer, "create_backbone", small_backbone)
        yield HAMER_SOURCE, write_release(tmp_path_factory.mktemp("hamer"))


@pytest.mark.slow
def test_plan_checks_the_detector_files_with_hamer(release, files):
    hamer = {"backend": "hamer", "hamer_dir": str(release[0]), "hamer_checkpoint": str(release[1])}
    with pytest.raises(MissingAssetError, match="wholebody.pth.*fetch_demo_data.sh"):
        check_estimation(_options(**hamer), "build-taste", detector=True)
    hamer["vitpose"] = str(vitpose_path(files[0], None))
    with pytest.raises(MissingAssetError, match="no --detector-dir"):
        check_estimation(_options(**hamer), "build-taste", detector=True)
    check_estimation(_options(**hamer, detector_dir=str(files[1])), "build-taste", detector=True)
    check_estimation(_options(**hamer), "build-taste", detector=False)  # hands from files


@pytest.mark.slow
def test_estimate_hands_with_hamer_on_vitpose_hands(release, files, hands):
    from dwm_data.cameras import Intrinsics

    backend = HamerBackend(*release, detector=hands)
    frames = _frames(3)
    estimate = estimate_hands(backend, frames, Intrinsics(150.0, 150.0, 79.5, 59.5, 160, 120))
    track: HandTrack = estimate.track
    assert track.valid.any() and track.vertices is not None
    assert np.isfinite(track.vertices[track.valid]).all()
    assert np.isfinite(track.mano["hand_pose"][track.valid]).all()
    assert estimate.intrinsics.fx == pytest.approx(5000 / 256 * 160)


def _cli(*args: str):
    import subprocess
    from pathlib import Path

    project = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=project, capture_output=True, text=True
    )


@pytest.mark.parametrize("command", ["build-taste", "build-ego"])
def test_commands_refuse_vitpose_for_mano_fit_in_one_line(command, tmp_path):
    """Through the command line: exit 2, one line, nothing written."""
    from dwm_data.fixtures.mano import write_mano_models

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    mano = tmp_path / "mano"
    write_mano_models(mano)
    result = _cli(command, str(tmp_path / "clips"), str(tmp_path / "run"), "--hands", "mano-fit",
                  "--mano-dir", str(mano), "--hand-detector", "vitpose", "-r", "tiny")  # fmt: skip
    message = result.stderr.strip()
    assert result.returncode == 2 and len(message.splitlines()) == 1, result.stderr
    assert "--hand-detector vitpose gives 2D hand keypoints only" in message
    assert not (tmp_path / "run").exists()
