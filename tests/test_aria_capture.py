"""aria-capture end to end on generated captures, and its bad-input failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("projectaria_tools")
torch = pytest.importorskip("torch")

from dwm_data.builder import UnitContext, make_builder  # noqa: E402
from dwm_data.dwm_layout.exporter import export_dwm  # noqa: E402
from dwm_data.errors import UnitError  # noqa: E402
from dwm_data.fixtures.aria import GROUND_TRUTH, SyntheticSpec, write_synthetic_capture  # noqa: E402
from dwm_data.store import ShardWriter  # noqa: E402

# Tiny and quick: enough to reach every failure, too coarse to score a reconstruction.
ROUGH = SyntheticSpec(
    sensor=48, explore_seconds=1.5, interact_seconds=1.2, surfel_step=0.2, points=300
)


@pytest.fixture(scope="module")
def rough_capture(tmp_path_factory) -> Path:
    return write_synthetic_capture(tmp_path_factory.mktemp("aria") / "rough", ROUGH)


def few_steps():
    """The tiny recipe with a token splat, for tests about everything but the splat."""
    from dwm_data.recipe import load_recipe

    return load_recipe("tiny", ["aria.splat.steps=20", "aria.splat.refine_stop=0"])


def _process(capture: Path, recipe, tmp_path: Path, **options):
    import logging

    builder = make_builder("aria-capture", recipe, {"capture": str(capture), **options})
    (unit,) = builder.plan()
    builder.setup()  # as a worker does before its first unit
    ctx = UnitContext(tmp_path / "scratch", logging.getLogger("test"))
    return list(builder.process(unit, ctx))


def _copy(capture: Path, tmp_path: Path) -> Path:
    target = tmp_path / capture.name
    shutil.copytree(capture, target)
    return target


def test_generated_capture_has_the_real_formats(rough_capture):
    """The generated MPS files read through projectaria-tools' own readers."""
    from dwm_data.aria.capture import find_capture, read_online_calibrations, read_points
    from dwm_data.aria.conventions import UPRIGHT
    from dwm_data.aria.hands import HandTracking
    from dwm_data.aria.trajectory import Trajectory
    from dwm_data.fixtures.aria import rgb_extrinsics, upright_path

    files = find_capture(rough_capture)
    recording = files.open_recording()
    times = recording.timestamps_ns()
    assert len(times) == round(ROUGH.rgb_fps * (ROUGH.explore_seconds + ROUGH.interact_seconds))
    assert recording.frame(0).shape == (48, 48, 3)
    assert str(recording.calibration().get_model_name()).endswith("FISHEYE624")
    trajectory = Trajectory.read(files.trajectory)
    assert trajectory.covers(times)
    # quaternions written in MPS order (x, y, z, w) read back as the poses that were written
    t = 0.5 + 0.005 * np.arange(3)
    written = np.stack(
        [
            upright_path(x, ROUGH.explore_seconds)
            @ np.linalg.inv(UPRIGHT)
            @ np.linalg.inv(rgb_extrinsics())
            for x in t
        ]
    )
    read = trajectory.at(times[0] + np.round(t * 1e9).astype(np.int64))
    assert np.allclose(read, written, atol=1e-5)
    assert len(read_points(files.points, 1e-3, 5e-2)) == ROUGH.points
    hands = HandTracking.read(files.hand_tracking)
    assert hands.valid[:, 1].all() and not hands.valid[:, 0].any()
    online = read_online_calibrations(files.online_calibration)
    factory_f = recording.calibration().get_focal_lengths()[0]
    online_f = online[0].get_camera_calib("camera-rgb").get_focal_lengths()[0]
    assert factory_f == pytest.approx(online_f * 1.05)  # the factory calibration has drifted


def test_trajectory_not_covering_the_interaction(rough_capture, tiny_recipe, tmp_path):
    capture = _copy(rough_capture, tmp_path)
    path = capture / "mps" / "slam" / "closed_loop_trajectory.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    with pytest.raises(UnitError, match="trajectory covers") as info:
        _process(capture, tiny_recipe, tmp_path)
    assert info.value.stage == "trajectory"


def test_missing_calibration(rough_capture, tiny_recipe, tmp_path):
    capture = _copy(rough_capture, tmp_path)
    (capture / "device_calibration.json").unlink()
    with pytest.raises(UnitError, match="lacks device_calibration.json") as info:
        _process(capture, tiny_recipe, tmp_path)
    assert info.value.stage == "calibration"


def test_too_few_exploration_frames(rough_capture, tiny_recipe, tmp_path):
    with pytest.raises(UnitError, match="frames before the interaction") as info:
        _process(rough_capture, tiny_recipe, tmp_path, starts=["0.3s"])
    assert info.value.stage == "exploration"


def test_clip_past_the_end_of_the_recording(rough_capture, tiny_recipe, tmp_path):
    with pytest.raises(UnitError, match="the recording spans") as info:
        _process(rough_capture, tiny_recipe, tmp_path, starts=["f24"])
    assert info.value.stage == "clips"


def test_vrs_without_rgb_is_a_recorded_failure(shared_data, tiny_recipe, tmp_path):
    """Through the run machinery: the unit fails with its stage, the run goes on and says so."""
    from dwm_data.build import build

    capture = tmp_path / "captures" / "depth_only"
    capture.mkdir(parents=True)
    (capture / "recording.vrs").symlink_to(
        shared_data("aria/gen1/aria_digital_twin_test_data/depth_images.vrs")
    )
    sample = shared_data("aria/gen1/mps_sample/trajectory")
    for name in ("closed_loop_trajectory.csv", "global_points.csv.gz"):
        (capture / name).symlink_to(sample / name)
    result = build(
        "aria-capture",
        {"capture": str(capture.parent), "starts": ["1s"]},
        tiny_recipe,
        tmp_path / "run",
        progress=False,
    )
    assert result.status.failed == 1 and result.status.samples == 0
    (failure,) = result.status.failures
    assert failure["stage"] == "recording" and "no 'camera-rgb' stream" in failure["message"]


@pytest.mark.slow
def test_static_video_matches_ground_truth(tmp_path, tiny_recipe):
    """Exploration frames -> splat -> static video along the interaction path, scored against
    the room rendered without the hand from the same cameras (CPU, 64x48)."""
    from dwm_data.cameras import Intrinsics
    from dwm_data.fixtures.aria import SyntheticSpec
    from dwm_data.splat.ply import load_ply
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import psnr, render_views
    from dwm_data.video import decode

    capture = write_synthetic_capture(tmp_path / "room", SyntheticSpec())
    (sample,) = _process(capture, tiny_recipe, tmp_path, splats=str(tmp_path / "splats"))

    assert sample.key == "aria-room-00000"
    writer = ShardWriter(
        tmp_path / "run" / "shards", tmp_path / "run" / "manifests", "t", 0, 9, 10**9
    )
    writer.add_unit("u", [sample])
    writer.close()
    export_dwm(tmp_path / "run", tmp_path / "out")  # the released real-world layout
    listed = (tmp_path / "out" / "realworld_train.txt").read_text().splitlines()
    assert listed == ["realworld/realworld_dynamic/videos/room_00000.mp4"]
    assert (tmp_path / "splats" / "room.ply").exists()
    meta = sample.meta
    assert meta["hands"] == {"representation": "skeleton", "backend": "aria-mps"}
    assert meta["calibration"] == "online"
    codecs = meta["codecs"]  # as the released real-world examples
    assert (codecs["video"]["crf"], codecs["hand"]["crf"], codecs["hand"]["pix_fmt"]) == (
        23,
        23,
        "yuv444p",
    )
    assert meta["splat"]["heldout_psnr"] > 20
    assert len(meta["source_frames"]) == 9 and sample.camera.shape == (9, 4, 4)
    intr = Intrinsics(**meta["intrinsics"], width=64, height=48)
    truth = render_views(
        load_ply(capture / GROUND_TRUTH),
        torch.from_numpy(np.linalg.inv(sample.camera)).float(),
        torch.from_numpy(np.stack([gsplat_K(intr)] * 9)).float(),
        64,
        48,
    )
    static = torch.from_numpy(decode(sample.static)).float() / 255
    scores = [psnr(static[i], truth[i]) for i in range(9)]
    assert min(scores) >= 25.0, scores
    hands = decode(sample.hand)
    assert hands.reshape(9, -1).max(axis=1).min() > 100  # the hand is drawn in every frame


@pytest.mark.parametrize("device", ["Gen1", "Gen2"])
def test_recorded_frames_stand_upright_on_either_device(device, tmp_path):
    """Gen1 (square sensor, sideways) and Gen2 (4:3, upright) captures through aria-capture: the
    clip's frames equal the room rendered from the sample's cameras and intrinsics."""
    from dataclasses import replace

    from dwm_data.aria.conventions import turn
    from dwm_data.cameras import Intrinsics
    from dwm_data.splat.ply import load_ply
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import render_views
    from dwm_data.video import decode

    capture = write_synthetic_capture(tmp_path / device, replace(ROUGH, device=device))
    (sample,) = _process(capture, few_steps(), tmp_path)
    assert sample.meta["device"] == device and sample.meta["poses"] == "mps"
    intr = Intrinsics(**sample.meta["intrinsics"], width=64, height=48)
    video = decode(sample.video).astype(float) / 255

    def error(cameras: np.ndarray) -> np.ndarray:
        truth = render_views(
            load_ply(capture / GROUND_TRUTH),
            torch.from_numpy(np.linalg.inv(cameras)).float(),
            torch.from_numpy(np.stack([gsplat_K(intr)] * len(cameras))).float(),
            64,
            48,
        ).numpy()
        return np.median(np.abs(video - truth), axis=(1, 2, 3))  # the hand covers a corner

    right, upside_down = error(sample.camera), error(sample.camera @ turn(2))
    assert right.max() < 0.03 and np.all(upside_down > 3 * right), (right, upside_down)


def test_mps_hands_fitted_with_mano_render_meshes(rough_capture, tmp_path):
    """With MANO files (here generated ones in the real format), MPS landmarks become meshes."""
    from dwm_data.fixtures.mano import write_mano_models
    from dwm_data.hands.track import HandTrack
    from dwm_data.video import decode

    write_mano_models(tmp_path / "mano")
    (sample,) = _process(rough_capture, few_steps(), tmp_path, mano_dir=str(tmp_path / "mano"))
    assert sample.meta["hands"] == {"representation": "mesh", "backend": "aria-mps+mano-fit"}
    track = HandTrack.from_npz(sample.hands)
    assert track.valid[:, 1].all() and not track.valid[:, 0].any()
    assert "hand_pose" in track.mano
    hand = decode(sample.hand)
    lit = hand.reshape(-1, 3)[hand.reshape(-1, 3).max(axis=1) > 40]
    assert len(lit) > 9 * 20  # a visible hand in every frame on average
    assert lit[:, 0].mean() > 1.5 * lit[:, 1].mean()  # shaded in the right hand's red


def test_hand_masks_cover_the_wearers_hand(rough_capture):
    """Pixels where the recorded frame differs from the empty room are inside the hand mask."""
    from dwm_data.aria.capture import find_capture
    from dwm_data.aria.hands import hand_masks, hand_track
    from dwm_data.aria.source import CaptureSource
    from dwm_data.splat.ply import load_ply
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import render_views

    source = CaptureSource.open(find_capture(rough_capture), 64, 48, 1.0, 0.5)
    last = [len(source.times_ns) - 1]
    frame = source.frames(last)[0].astype(float)
    intr = source.camera.intrinsics
    empty = render_views(
        load_ply(rough_capture / GROUND_TRUTH),
        torch.from_numpy(np.linalg.inv(source.poses(last))).float(),
        torch.from_numpy(gsplat_K(intr)).float()[None],
        64,
        48,
    )[0].numpy()
    hand = np.abs(frame - empty * 255).max(axis=-1) > 60
    assert hand.sum() > 20
    track = hand_track(source.tracking, source.times_ns[last], source.device_camera(last[0]), intr)
    keep = hand_masks(track, 64, 48)[0]
    assert (~keep[hand]).mean() > 0.9
    assert keep.mean() > 0.5  # and the mask leaves most of the scene to train on


def test_image_based_hand_backend_runs_on_the_undistorted_frames(rough_capture, tmp_path):
    """--hands mediapipe: build-taste's backend on the clip's frames, with our exact intrinsics."""
    pytest.importorskip("mediapipe")
    from dwm_data.hands.track import HandTrack

    (sample,) = _process(rough_capture, few_steps(), tmp_path, hands="mediapipe")
    assert sample.meta["hands"] == {"representation": "skeleton", "backend": "mediapipe"}
    assert HandTrack.from_npz(sample.hands).frames == 9
