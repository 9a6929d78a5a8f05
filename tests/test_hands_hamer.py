"""The HaMeR backend against HaMeR itself: its real classes (random weights) loaded from a
release-shaped folder, its `ViTDetDataset` crops, its demo's camera conversion, its renderer's
faces; plus the adapter's mirroring against hands of known MANO parameters.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys

import numpy as np
import pytest
from hamer_release import HAMER_SOURCE, small_backbone, write_release

from dwm_data.cameras import project
from dwm_data.errors import MissingAssetError
from dwm_data.fixtures.mano import write_mano_models
from dwm_data.hands.backend import check_backend, make_backend, resolve_backend, skeleton_warning
from dwm_data.hands.hamer import (
    MIRROR,
    Crop,
    HamerNetwork,
    HamerSettings,
    cam_crop_to_full,
    crop_for,
    crop_image,
    estimate_with_hamer,
    hamer_files,
    import_hamer,
    load_hamer,
)
from dwm_data.hands.mano import ManoHands, plain_mano_folder, read_mano_pickle
from dwm_data.hands.render import render_mesh
from dwm_data.hands.track import HandTrack

torch = pytest.importorskip("torch")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

W, H = 96, 64


def _hamer_source():
    if not (HAMER_SOURCE / "hamer" / "__init__.py").is_file():
        message = f"HaMeR source missing: {HAMER_SOURCE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return HAMER_SOURCE


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(hamer_dir, checkpoint) of a random-weight HaMeR release; HaMeR imported from
    ../shared/third_party/hamer as --hamer-dir, its ViT-H cut to a test size."""
    source = _hamer_source()
    for module in ("pytorch_lightning", "yacs", "einops", "skimage"):  # timm: via import_hamer
        pytest.importorskip(module)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(sys, "dont_write_bytecode", True)  # ../shared stays as it is
        import_hamer(source)
        import hamer.models.hamer

        patch.setattr(hamer.models.hamer, "create_backbone", small_backbone)
        yield source, write_release(tmp_path_factory.mktemp("hamer"))


@pytest.fixture(scope="module")
def network(release):
    return load_hamer(*release)


# --- MANO: the user's chumpy pickle, a chumpy-free private copy ---------------------------------


def test_plain_copy_of_a_chumpy_mano_pickle(tmp_path, monkeypatch):
    smplx = pytest.importorskip("smplx")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    right = write_mano_models(tmp_path / "user")["right"]
    with open(right, "rb") as handle, pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.load(handle, encoding="latin1")  # as smplx reads it: needs chumpy
    folder = plain_mano_folder(right)
    assert folder.is_relative_to(tmp_path / "cache" / "dwm-data")
    assert (folder.stat().st_mode & 0o777, (folder / "MANO_RIGHT.pkl").stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    with open(folder / "MANO_RIGHT.pkl", "rb") as handle:
        plain = pickle.load(handle, encoding="latin1")
    ours = read_mano_pickle(right)
    assert plain.keys() == ours.keys() and plain["shapedirs"].shape == (778, 3, 10)
    for key in ("v_template", "shapedirs", "posedirs", "weights", "f"):
        np.testing.assert_array_equal(plain[key], ours[key])
    with contextlib.redirect_stdout(io.StringIO()):
        layer = smplx.MANO(str(folder), is_rhand=True, use_pca=False)  # smplx's own reading
    np.testing.assert_array_equal(layer.v_template.numpy(), ours["v_template"].astype(np.float32))
    assert plain_mano_folder(right) == folder  # cached by content


# --- loading the release ------------------------------------------------------------------------


def test_hamers_own_loader_refuses_its_checkpoint_on_current_torch(release):
    from hamer.models import load_hamer as hamers_load_hamer

    with pytest.raises(pickle.UnpicklingError, match="CfgNode"):
        hamers_load_hamer(str(release[1]))


def test_load_hamer_builds_the_release_network(release, network):
    from hamer.models import HAMER

    assert isinstance(network.module, HAMER) and not network.module.training
    assert network.module.mesh_renderer is None  # no GL context at load
    stored = torch.load(release[1], weights_only=False)["state_dict"]
    for name, value in network.module.state_dict().items():
        if name.startswith(("backbone.", "mano_head.")):
            torch.testing.assert_close(value, stored[name], rtol=0, atol=0)
    assert network.settings == HamerSettings()  # the release values, read from its config
    assert network.settings.intrinsics(720, 480).fx == pytest.approx(14062.5)


def test_faces_are_hamers_renderer_faces(release, network):
    """MANO's faces + the renderer's 14 wrist-closing ones (1538 + 14 = 1552 for the real MANO;
    the generated hand has fewer); the mirrored left with reversed winding."""
    from hamer.utils.renderer import Renderer

    left, right = network.faces
    mano = read_mano_pickle(release[1].parents[2] / "data" / "mano" / "MANO_RIGHT.pkl")["f"]
    renderer = Renderer(network.module.cfg, faces=mano)
    assert right.shape == (len(mano) + 14, 3)
    np.testing.assert_array_equal(right, renderer.faces)
    np.testing.assert_array_equal(left, renderer.faces_left)
    np.testing.assert_array_equal(right[: len(mano)], mano)
    np.testing.assert_array_equal(left, right[:, [0, 2, 1]])


def test_a_checkpoint_without_the_network_fails_in_one_line(release, tmp_path):
    _, checkpoint = release
    state = torch.load(checkpoint, weights_only=False)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if "backbone" not in k}
    bad = tmp_path / "_DATA" / "hamer_ckpts" / "checkpoints" / "other.ckpt"
    data = checkpoint.parents[2]
    for name in ("hamer_ckpts/model_config.yaml", "data/mano_mean_params.npz", "data/mano"):
        (tmp_path / "_DATA" / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(data / name, tmp_path / "_DATA" / name)
    bad.parent.mkdir(parents=True)
    torch.save(state, bad)
    with pytest.raises(Exception, match=r"not a HaMeR checkpoint .* backbone\."):
        load_hamer(release[0], bad)


# --- crops: ours are ViTDetDataset's ------------------------------------------------------------


def _frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Texture with structure at every scale, so a shifted or unblurred patch shows."""
    rng = np.random.default_rng(seed)
    import cv2

    noise = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    smooth = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.integers(0, 64, (height, width, 3))
    return np.clip(smooth.astype(int) + fine - 32, 0, 255).astype(np.uint8)


def _landmarks(box_px: tuple[float, float, float, float], seed: int) -> np.ndarray:
    """21 points spanning the box exactly (our pixel-centre coordinates)."""
    x0, y0, x1, y1 = box_px
    rng = np.random.default_rng(seed)
    points = rng.uniform([x0, y0], [x1, y1], (21, 2))
    points[0], points[1] = (x0, y0), (x1, y1)
    return points


def _vitdet_items(cfg, frame: np.ndarray, landmarks: list[np.ndarray], sides: list[int]):
    """HaMeR's own crops: ViTDetDataset on the BGR frame with DWM's fork's boxes
    (landmark extent in corner pixels) and rescale 2.0."""
    from hamer.datasets.vitdet_dataset import ViTDetDataset

    boxes = np.array([np.r_[(p + 0.5).min(0), (p + 0.5).max(0)] for p in landmarks])
    dataset = ViTDetDataset(cfg, frame[:, :, ::-1].copy(), boxes, np.array(sides), 2.0)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every downsampling factor
        return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize(
    ("box", "blurred"),
    [((300.5, 180.25, 371.75, 262.0), False), ((150.0, 90.0, 460.0, 400.0), True)],
    ids=["small-box", "box-over-563px"],
)
def test_crops_equal_hamers_vitdet_dataset(network, box, blurred):
    frame = _frame(720, 480)
    points = [_landmarks(box, 1), _landmarks(box, 2)]
    theirs = _vitdet_items(network.module.cfg, frame, points, [0, 1])
    for side, (item, landmarks) in enumerate(zip(theirs, points, strict=True)):
        crop = crop_for(0, side, landmarks, network.settings)
        assert (crop.size / 256 / 2 > 1.1) == blurred
        np.testing.assert_array_equal(crop.center, item["box_center"])
        assert crop.size == item["box_size"]
        np.testing.assert_array_equal(crop_image(frame, crop, network.settings), item["img"])


def test_crop_convention_is_hamers_not_pixel_centred(network):
    """HaMeR maps the box centre onto the patch centre as a pixel index: for a 2x downsampling
    that is half a source pixel off a pixel-centred resampling (the deviation we now follow)."""
    frame = _frame(720, 480)
    crop = Crop(0, 1, np.array([360.0, 240.0], np.float32), 512.0)
    patch = crop_image(frame, crop, network.settings)
    settings = network.settings
    restored = patch * (255 * np.array(settings.std)[:, None, None]) + (
        255 * np.array(settings.mean)[:, None, None]
    )
    # patch pixel 128 samples source x = 360 exactly (centred resampling would sample 360.5)
    np.testing.assert_allclose(restored[:, 128, 128], frame[240, 360], atol=1e-3)


# --- conversion: ours is HaMeR's demo -----------------------------------------------------------


def _demo_path(model, items):
    """HaMeR's demo.py after the dataset: model, un-mirroring, cam_crop_to_full; the vertices
    it hands to its renderer (before the renderer's turn into GL axes)."""
    from hamer.utils.renderer import cam_crop_to_full as hamer_cam_crop_to_full

    batch = torch.utils.data.default_collate(items)
    with torch.no_grad():
        out = model(batch)
    multiplier = 2 * batch["right"] - 1
    pred_cam = out["pred_cam"]
    pred_cam[:, 1] = multiplier * pred_cam[:, 1]
    img_size = batch["img_size"].float()
    focal = model.cfg.EXTRA.FOCAL_LENGTH / model.cfg.MODEL.IMAGE_SIZE * img_size.max()
    cam_t = hamer_cam_crop_to_full(
        pred_cam, batch["box_center"].float(), batch["box_size"].float(), img_size, focal
    ).numpy()
    meshes = []
    for n in range(len(items)):
        verts = out["pred_vertices"][n].numpy()
        verts[:, 0] = (2 * batch["right"][n].numpy() - 1) * verts[:, 0]
        meshes.append(verts + cam_t[n])
    return meshes


def test_conversion_equals_hamers_demo(network):
    frames = np.stack([_frame(720, 480, 0), _frame(720, 480, 1)])
    boxes = {0: (200.0, 150.0, 290.0, 260.0), 1: (420.0, 170.0, 500.0, 250.0)}
    landmarks = HandTrack.empty(2)
    for f in range(2):
        for side, box in boxes.items():
            shifted = (box[0] + 15 * f, box[1], box[2] + 15 * f, box[3])
            landmarks.valid[f, side] = True
            landmarks.keypoints_px[f, side] = _landmarks(shifted, 10 * f + side)
    track = estimate_with_hamer(network, frames, landmarks, batch_size=3)
    for f in range(2):
        points = [landmarks.keypoints_px[f, s].astype(np.float64) for s in (0, 1)]
        items = _vitdet_items(network.module.cfg, frames[f], points, [0, 1])
        for side, mesh in enumerate(_demo_path(network.module, items)):
            np.testing.assert_allclose(track.vertices[f, side], mesh, rtol=1e-5, atol=1e-5)
    assert np.isfinite(track.keypoints_px).all() and np.isfinite(track.mano["hand_pose"]).all()


# --- plan-time checks and the backend choice ----------------------------------------------------


def test_hamer_backend_without_files_fails_at_start(tmp_path):
    with pytest.raises(MissingAssetError, match=r"hamer\.ckpt.*github\.com/geopavlakos/hamer"):
        make_backend("hamer", hamer_dir=tmp_path)
    with pytest.raises(MissingAssetError, match="no --hamer-dir"):
        make_backend("hamer")


def test_plan_check_imports_hamer(release, tmp_path):
    check_backend("hamer", hamer_dir=release[0], hamer_checkpoint=release[1])
    hamer_files(None, release[1])  # an installed package needs only the checkpoint


def test_plan_check_says_how_to_install_hamer(tmp_path, monkeypatch):
    """Without the package (here: a clone missing its `hamer` folder) the check names the
    install that works: no detectron2, mmcv or chumpy."""
    for name in ("hamer", "hamer.models"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed anywhere
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps -e .*mmcv.*not needed"):
        import_hamer(tmp_path)


def test_hamer_files_follow_the_release_layout(tmp_path):
    data = tmp_path / "_DATA"
    for name in (
        "hamer_ckpts/checkpoints/hamer.ckpt",
        "data/mano/MANO_RIGHT.pkl",
        "data/mano_mean_params.npz",
    ):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"")
    with pytest.raises(MissingAssetError, match="model_config.yaml"):
        hamer_files(tmp_path)
    (data / "hamer_ckpts/model_config.yaml").write_text(
        "MANO:\n  MODEL_PATH: data/mano\n  MEAN_PARAMS: data/mano_mean_params.npz\n"
    )
    files = hamer_files(tmp_path)
    assert files["checkpoint"].name == "hamer.ckpt"
    assert files["mano_right"] == data / "data" / "mano" / "MANO_RIGHT.pkl"
    (data / "hamer_ckpts/checkpoints/new_hamer_weights.ckpt").write_bytes(b"")
    assert hamer_files(tmp_path)["checkpoint"].name == "new_hamer_weights.ckpt"
    (data / "data/mano/MANO_RIGHT.pkl").unlink()
    with pytest.raises(MissingAssetError, match="MANO_RIGHT.pkl"):
        hamer_files(tmp_path)


def test_auto_takes_meshes_when_the_files_are_given(tmp_path):
    assert resolve_backend("auto", hamer_dir=tmp_path) == "hamer"
    assert resolve_backend("auto", mano_dir=tmp_path, hamer_checkpoint=tmp_path) == "hamer"
    assert resolve_backend("auto", mano_dir=tmp_path) == "mano-fit"
    assert resolve_backend("auto") == "mediapipe"
    assert resolve_backend("mediapipe", mano_dir=tmp_path) == "mediapipe"
    line = skeleton_warning("build-taste")  # what auto says when it falls back
    assert "\n" not in line and "not match the official model" in line
    assert "--hamer-dir" in line and "--mano-dir" in line and "mano.is.tue.mpg.de" in line


# --- the adapter's mirroring, on hands of known MANO parameters ---------------------------------


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mano")
    write_mano_models(folder)
    return ManoHands(folder)


def _truth(hands, frames: int):
    """Known hands in HaMeR's camera: left and right MANO, placed at full-image translations."""
    rng = np.random.default_rng(0)
    k = HamerSettings().intrinsics(W, H)
    truth = HandTrack.empty(frames, with_vertices=778)
    params = {}
    for s, side in enumerate(("left", "right")):
        orient = Rotation.from_euler("z", 90 if s == 0 else -90, degrees=True).as_rotvec()
        orient = np.repeat(orient[None], frames, 0) + rng.normal(0, 0.1, (frames, 3))
        pose = rng.normal(0, 0.2, (frames, 45))
        betas = np.repeat(rng.normal(0, 0.5, (1, 10)), frames, 0)
        z = k.fx * 0.15 / 40  # a 15 cm hand spans about 40 px
        cam_t = np.c_[
            np.full(frames, -0.04 if s == 0 else 0.04), np.zeros(frames), np.full(frames, z)
        ]
        t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        out = hands(side, t(orient), t(pose), t(betas), t(np.zeros((frames, 3))))
        wrist = out.keypoints[:, :1].numpy()
        truth.valid[:, s] = True
        truth.vertices[:, s] = out.vertices.numpy() - wrist + cam_t[:, None]
        truth.keypoints_cam[:, s] = out.keypoints.numpy() - wrist + cam_t[:, None]
        truth.keypoints_px[:, s] = project(truth.keypoints_cam[:, s], k)
        params[side] = (orient, pose, betas, wrist, cam_t)
    return truth, params


class PerfectHamer:
    """Stands in for the network only: answers each crop with HaMeR's outputs for a perfect
    estimate of the known hand (a left hand as the mirrored right hand, with a mirrored crop
    camera, as the real network sees it), so the adapter's geometry can be checked exactly."""

    def __init__(self, hands, truth_params, crops: list[Crop], image_size: tuple[int, int]):
        self.hands, self.params, self.crops = hands, truth_params, list(crops)
        self.width, self.height = image_size
        self.batch_sizes: list[int] = []

    def __call__(self, batch):
        images = batch["img"]
        assert images.shape[1:] == (3, 256, 256) and images.dtype == torch.float32
        self.batch_sizes.append(len(images))
        out = {
            k: [] for k in ("pred_cam", "pred_vertices", "pred_keypoints_3d", "go", "hp", "betas")
        }
        focal = HamerSettings().intrinsics(self.width, self.height).fx
        for _ in range(len(images)):
            crop = self.crops.pop(0)
            orient, pose, betas, _, cam_t = self.params[("left", "right")[crop.side]]
            f = crop.frame
            mirror = MIRROR if crop.side == 0 else np.eye(3)
            rotations = Rotation.from_rotvec(
                np.r_[orient[f][None], pose[f].reshape(15, 3)]
            ).as_matrix()
            rotations = mirror @ rotations @ mirror
            rotvecs = Rotation.from_matrix(rotations).as_rotvec()
            t = lambda a: torch.tensor(np.asarray(a)[None], dtype=torch.float32)  # noqa: E731
            pred = self.hands(
                "right", t(rotvecs[0]), t(rotvecs[1:].ravel()), t(betas[f]), t(np.zeros(3))
            )
            shift = pred.keypoints[0, :1].numpy()
            sign = 1.0 if crop.side == 1 else -1.0
            target = cam_t[f]  # where the wrist belongs in HaMeR's full-image camera
            scale = 2 * focal / (crop.size * target[2])
            bs = crop.size * scale
            tx = target[0] - 2 * (crop.center[0] - self.width / 2) / bs
            ty = target[1] - 2 * (crop.center[1] - self.height / 2) / bs
            out["pred_cam"].append([scale, sign * tx, ty])
            out["pred_vertices"].append(pred.vertices[0].numpy() - shift)
            out["pred_keypoints_3d"].append(pred.keypoints[0].numpy() - shift)
            out["go"].append(rotations[:1])
            out["hp"].append(rotations[1:])
            out["betas"].append(betas[f])
        tensor = lambda name: torch.tensor(np.array(out[name]), dtype=torch.float32)  # noqa: E731
        return {
            "pred_cam": tensor("pred_cam"),
            "pred_vertices": tensor("pred_vertices"),
            "pred_keypoints_3d": tensor("pred_keypoints_3d"),
            "pred_mano_params": {
                "global_orient": tensor("go"),
                "hand_pose": tensor("hp"),
                "betas": tensor("betas"),
            },
        }


def test_adapter_puts_both_hands_where_the_truth_is(hands):
    frames = 3
    truth, params = _truth(hands, frames)
    landmarks = HandTrack.empty(frames)
    landmarks.valid[:] = True
    landmarks.keypoints_px[:] = truth.keypoints_px
    crops = [
        crop_for(f, s, truth.keypoints_px[f, s])
        for f, s in zip(*np.nonzero(landmarks.valid), strict=True)
    ]
    model = PerfectHamer(hands, params, crops, (W, H))
    video = np.zeros((frames, H, W, 3), np.uint8)
    track = estimate_with_hamer(HamerNetwork(model, HamerSettings()), video, landmarks, 4)
    assert model.batch_sizes == [4, 2] and not model.crops
    np.testing.assert_allclose(track.keypoints_px, truth.keypoints_px, atol=0.05)
    np.testing.assert_allclose(track.vertices, truth.vertices, atol=1e-4)
    # a left hand's MANO parameters come back in the left hand's own frame
    np.testing.assert_allclose(track.mano["global_orient"][:, 0], params["left"][0], atol=1e-4)
    np.testing.assert_allclose(track.mano["hand_pose"][:, 1], params["right"][1], atol=1e-4)
    # rendered with HaMeR's faces (reversed winding for the mirrored left), it covers the truth
    right = hands.faces["right"]
    k = HamerSettings().intrinsics(W, H)
    ours = render_mesh(track.vertices, (right[:, [0, 2, 1]], right), k, W, H)
    theirs = render_mesh(truth.vertices, (hands.faces["left"], right), k, W, H)
    assert (ours.sum(-1) > 0).mean() > 0.05
    np.testing.assert_array_equal(ours.sum(-1) > 0, theirs.sum(-1) > 0)


def test_cam_crop_to_full_centre_box():
    crop = Crop(0, 1, np.array([360.0, 240.0]), 100.0)
    t = cam_crop_to_full(np.array([2.0, 0.1, -0.2]), crop, 720, 480, 14062.5)
    np.testing.assert_allclose(t, [0.1, -0.2, 2 * 14062.5 / 200])


@pytest.mark.slow
def test_build_taste_with_hamer_renders_its_meshes(release, shared_data, tmp_path):
    """build-taste --hands auto with --hamer-dir and a checkpoint: model load in the worker's
    setup (where it failed before), HaMeR on the real clip's MediaPipe boxes, meshes drawn."""
    import logging

    from dwm_data.builder import UnitContext, make_builder
    from dwm_data.recipe import load_recipe
    from dwm_data.video import decode

    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "pour.mp4").symlink_to(shared_data("dwm_realworld/realworld_fixed/pour_coke.mp4"))
    (folder / "pour.txt").write_text("Pour the coke.")
    hamer = {"hamer_dir": str(release[0]), "hamer_checkpoint": str(release[1])}
    builder = make_builder("build-taste", load_recipe("tiny"), {"source": str(folder)} | hamer)
    assert builder.backend_name == "hamer"
    (unit,) = builder.plan()
    builder.setup()
    ctx = UnitContext(tmp_path / "scratch", logging.getLogger("test"))
    (sample,) = builder.process(unit, ctx)
    hands = sample.meta["hands"]
    assert (hands["backend"], hands["representation"]) == ("hamer", "mesh")
    assert sample.meta["intrinsics_origin"] == "hamer-full-image-camera"
    track = HandTrack.from_npz(sample.hands)
    assert track.valid.any() and np.isfinite(track.mano["hand_pose"][track.valid]).all()
    drawn = decode(sample.hand).reshape(track.frames, -1).max(axis=1) > 40
    # meshes drawn, and only in frames with a hand (a random network may place one off-screen)
    assert drawn.any() and not (drawn & ~track.valid.any(axis=1)).any()
