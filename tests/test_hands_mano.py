"""MANO without chumpy, on a generated model in the released layout; the MANO fit (`mano-fit`)
on a clip rendered from known parameters."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dwm_data.cameras import Intrinsics, project
from dwm_data.errors import MissingAssetError
from dwm_data.fixtures.mano import mano_model_dicts, write_mano_models
from dwm_data.hands.fit import fit_mano
from dwm_data.hands.mano import TIP_VERTICES, ManoHands, read_mano_pickle
from dwm_data.hands.render import render_mesh
from dwm_data.hands.track import HandTrack

torch = pytest.importorskip("torch")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

K = Intrinsics.from_fov(96, 64, 60)


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mano")
    write_mano_models(folder)
    return folder


@pytest.fixture(scope="module")
def hands(mano_dir):
    return ManoHands(mano_dir)


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=torch.float32)


def test_generated_file_needs_chumpy_for_plain_pickle(mano_dir):
    data = (mano_dir / "MANO_RIGHT.pkl").read_bytes()
    assert b"chumpy.reordering" in data and b"Select" in data
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(data, encoding="latin1")


def test_chumpy_free_loading_matches_the_arrays(mano_dir):
    loaded = read_mano_pickle(mano_dir / "MANO_RIGHT.pkl")
    expected = mano_model_dicts()["right"]
    np.testing.assert_array_equal(loaded["shapedirs"], expected["shapedirs"][:, :, :10])
    np.testing.assert_array_equal(loaded["v_template"], expected["v_template"])
    assert loaded["J_regressor"].shape == (16, 778)
    assert loaded["f"].shape[1] == 3


def test_loading_refuses_code(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # a pickle that would import os.system
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        read_mano_pickle(path)


def test_missing_mano_files_say_where_to_get_them(tmp_path):
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(b"")
    with pytest.raises(MissingAssetError, match=r"MANO_LEFT\.pkl.*mano\.is\.tue\.mpg\.de"):
        ManoHands(tmp_path)
    with pytest.raises(MissingAssetError, match="no --mano-dir"):
        ManoHands(None)


def test_keypoints_are_joints_and_tips_in_openpose_order(hands):
    zero = torch.zeros
    out = hands("right", zero(1, 3), zero(1, 45), zero(1, 10), _t([[0.0, 0.0, 0.5]]))
    keypoints, vertices = out.keypoints[0].numpy(), out.vertices[0].numpy()
    assert keypoints.shape == (21, 3)
    np.testing.assert_allclose(keypoints[[4, 8, 12, 16, 20]], vertices[list(TIP_VERTICES)])
    # each finger runs outward from the wrist: base, joints, tip
    for finger in range(5):
        chain = keypoints[[0, *range(1 + 4 * finger, 5 + 4 * finger)]]
        assert (np.diff(np.linalg.norm(chain - chain[0], axis=1)) > 0).all()
    left = hands("left", zero(1, 3), zero(1, 45), zero(1, 10), _t([[0.0, 0.0, 0.5]]))
    np.testing.assert_allclose(left.keypoints[0, :, 0], -keypoints[:, 0], atol=1e-6)


def _clip(hands, frames: int, seed: int = 1):
    """Both hands moving in front of the camera, from known MANO parameters."""
    rng = np.random.default_rng(seed)
    truth = HandTrack.empty(frames, with_vertices=778)
    for s, side in enumerate(("left", "right")):
        facing = Rotation.from_euler("z", 90 if side == "left" else -90, degrees=True)
        orient = [
            (Rotation.from_rotvec(rng.normal(0, 0.1, 3)) * facing).as_rotvec()
            for _ in range(frames)
        ]
        pose = np.cumsum(rng.normal(0, 0.05, (frames, 45)), 0) + rng.normal(0, 0.2, 45)
        betas = np.repeat(rng.normal(0, 0.5, (1, 10)), frames, 0)
        start = [0.08 if side == "right" else -0.08, 0.03, 0.45]
        transl = start + np.cumsum(rng.normal(0, 0.005, (frames, 3)), 0)
        out = hands(side, _t(orient), _t(pose), _t(betas), _t(transl))
        truth.valid[:, s] = True
        truth.vertices[:, s] = out.vertices.numpy()
        truth.keypoints_cam[:, s] = out.keypoints.numpy()
        truth.keypoints_px[:, s] = project(out.keypoints.numpy(), K)
    return truth


@pytest.mark.slow
def test_mano_fit_recovers_keypoints_and_mesh(hands):
    truth = _clip(hands, 6)
    faces = (hands.faces["left"], hands.faces["right"])
    video = render_mesh(truth.vertices, faces, K, 96, 64)
    assert (video.sum(-1) > 0).mean() > 0.05, "the clip shows both hands"
    # what a landmark detector gives: pixels within a pixel, metric 3D within millimetres
    rng = np.random.default_rng(2)
    detected = HandTrack.empty(6)
    detected.valid[:] = True
    detected.keypoints_px[:] = truth.keypoints_px + rng.normal(0, 0.5, truth.keypoints_px.shape)
    detected.keypoints_cam[:] = truth.keypoints_cam + rng.normal(
        0, 0.003, truth.keypoints_cam.shape
    )
    fitted = fit_mano(detected, hands, K)
    error = np.linalg.norm(fitted.keypoints_px - truth.keypoints_px, axis=-1)
    assert error.mean() < 1.0 and error.max() < 3.0, f"{error.mean():.2f} / {error.max():.2f} px"
    assert fitted.mano["hand_pose"].shape == (6, 2, 45) and np.isfinite(fitted.mano["betas"]).all()
    ours = render_mesh(fitted.vertices, faces, K, 96, 64).sum(-1) > 0
    theirs = video.sum(-1) > 0
    iou = (ours & theirs).sum() / (ours | theirs).sum()
    assert iou > 0.85, f"rendered fit overlaps the truth by IoU {iou:.2f}"


def test_mano_fit_leaves_missing_hands_empty(hands):
    truth = _clip(hands, 5)
    detected = HandTrack.empty(5)
    detected.valid[:, 1] = [True, True, False, True, True]
    detected.keypoints_px[detected.valid] = truth.keypoints_px[detected.valid]
    detected.keypoints_cam[detected.valid] = truth.keypoints_cam[detected.valid]
    fitted = fit_mano(detected, hands, K)
    assert np.isnan(fitted.vertices[2, 1]).all() and np.isnan(fitted.vertices[:, 0]).all()
    assert np.isfinite(fitted.vertices[[0, 1, 3, 4], 1]).all()
