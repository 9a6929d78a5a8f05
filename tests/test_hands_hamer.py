"""The HaMeR adapter's own code: crops, mirroring, batching, full-image camera, rendering.

The HaMeR network cannot run here (no package, no weights, GPU-oriented), so the model is a
stand-in that returns outputs of HaMeR's documented shapes for hands of known MANO parameters,
as the real network would for a perfect estimate; everything around it is the code users run.
"""

from __future__ import annotations

import numpy as np
import pytest

from dwm_data.cameras import project
from dwm_data.errors import MissingAssetError
from dwm_data.hands.backend import make_backend
from dwm_data.hands.hamer import (
    MEAN,
    MIRROR,
    STD,
    Crop,
    cam_crop_to_full,
    crop_for,
    crop_image,
    estimate_with_hamer,
    hamer_intrinsics,
)
from dwm_data.hands.mano import ManoHands
from dwm_data.hands.render import render_mesh
from dwm_data.hands.synthetic import write_mano_models
from dwm_data.hands.track import HandTrack

torch = pytest.importorskip("torch")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

W, H = 96, 64


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mano")
    write_mano_models(folder)
    return ManoHands(folder)


def test_hamer_camera_at_720x480():
    k = hamer_intrinsics(720, 480)
    assert k.fx == pytest.approx(14062.5) and (k.cx, k.cy) == (359.5, 239.5)


def test_crop_box_follows_hamer():
    points = np.array([[10.0, 20.0], [30.0, 30.0]]).repeat([1, 20], axis=0) - 0.5
    crop = crop_for(3, 1, points)
    np.testing.assert_allclose(crop.center, [20.0, 25.0])
    # box 20x10, scaled 2.0 -> 40x20, widened to 192:256 -> 40x53.3, squared to the long side
    assert crop.size == pytest.approx(40 * 256 / 192)


def test_crop_image_maps_the_box_and_mirrors_left_hands():
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :48] = (255, 0, 0)  # left half red, right half blue
    image[:, 48:] = (0, 0, 255)
    box = Crop(0, 1, np.array([48.0, 32.0]), 64.0)
    right = crop_image(image, box) * STD[:, None, None] + MEAN[:, None, None]
    left = (
        crop_image(image, Crop(0, 0, box.center, box.size)) * STD[:, None, None]
        + MEAN[:, None, None]
    )
    assert right.shape == (3, 256, 256)
    assert right[0, 128, 20] > 200 and right[2, 128, 235] > 200, "red left, blue right"
    assert left[2, 128, 20] > 200 and left[0, 128, 235] > 200, "mirrored for a left hand"
    np.testing.assert_allclose(left, right[:, :, ::-1], atol=1e-3)


def _truth(hands, frames: int):
    """Known hands in HaMeR's camera: left and right MANO, placed at full-image translations."""
    rng = np.random.default_rng(0)
    k = hamer_intrinsics(W, H)
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


class FakeHamer:
    """Returns what HaMeR returns for a perfect estimate of each crop it is given, and records
    the batches and crops it saw. For a left hand it sees a mirrored crop and answers with the
    mirrored (right) hand and a mirrored crop camera, as the real network does."""

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
        focal = hamer_intrinsics(self.width, self.height).fx
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
            # a root-relative right hand, plus the crop camera that places it at cam_t
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
    model = FakeHamer(hands, params, crops, (W, H))
    video = np.zeros((frames, H, W, 3), np.uint8)
    track = estimate_with_hamer(model, video, landmarks, batch_size=4)
    assert model.batch_sizes == [4, 2] and not model.crops
    np.testing.assert_allclose(track.keypoints_px, truth.keypoints_px, atol=0.05)
    np.testing.assert_allclose(track.vertices, truth.vertices, atol=1e-4)
    # a left hand's MANO parameters come back in the left hand's own frame
    np.testing.assert_allclose(track.mano["global_orient"][:, 0], params["left"][0], atol=1e-4)
    np.testing.assert_allclose(track.mano["hand_pose"][:, 1], params["right"][1], atol=1e-4)
    # rendered with HaMeR's faces (reversed winding for the mirrored left), it covers the truth
    right = hands.faces["right"]
    k = hamer_intrinsics(W, H)
    ours = render_mesh(track.vertices, (right[:, [0, 2, 1]], right), k, W, H)
    theirs = render_mesh(truth.vertices, (hands.faces["left"], right), k, W, H)
    assert (ours.sum(-1) > 0).mean() > 0.05
    np.testing.assert_array_equal(ours.sum(-1) > 0, theirs.sum(-1) > 0)


def test_cam_crop_to_full_centre_box():
    crop = Crop(0, 1, np.array([360.0, 240.0]), 100.0)
    t = cam_crop_to_full(np.array([2.0, 0.1, -0.2]), crop, 720, 480, 14062.5)
    np.testing.assert_allclose(t, [0.1, -0.2, 2 * 14062.5 / 200])


def test_hamer_backend_without_files_fails_at_start(tmp_path):
    with pytest.raises(MissingAssetError, match=r"hamer\.ckpt.*github\.com/geopavlakos/hamer"):
        make_backend("hamer", hamer_dir=tmp_path)
    with pytest.raises(MissingAssetError, match="no --hamer-dir"):
        make_backend("hamer")


def test_hamer_files_prefer_the_upgraded_weights(tmp_path):
    from dwm_data.hands.hamer import hamer_files

    data = tmp_path / "_DATA"
    for name in (
        "hamer_ckpts/checkpoints/hamer.ckpt",
        "hamer_ckpts/model_config.yaml",
        "data/mano/MANO_RIGHT.pkl",
        "data/mano_mean_params.npz",
    ):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"")
    assert hamer_files(tmp_path)["checkpoint"].name == "hamer.ckpt"
    (data / "hamer_ckpts/checkpoints/new_hamer_weights.ckpt").write_bytes(b"")
    assert hamer_files(tmp_path)["checkpoint"].name == "new_hamer_weights.ckpt"
    (data / "data/mano/MANO_RIGHT.pkl").unlink()
    with pytest.raises(MissingAssetError, match="MANO_RIGHT.pkl"):
        hamer_files(tmp_path)
