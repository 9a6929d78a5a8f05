"""Aria Gen1 and Gen2 side by side on the real recordings in ../shared/data/aria: the device read
from the file, the upright turn, calibration sizes and rescales, and a Gen2 capture without MPS
posed by its own VIO with its on-device hand tracking. projectaria_tools is the reference."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("projectaria_tools")

from conftest import shared_path  # noqa: E402

from dwm_data.aria.calibration import OutputCamera, fit_to_frames, rescale_to  # noqa: E402
from dwm_data.aria.capture import find_capture, read_online_calibrations  # noqa: E402
from dwm_data.aria.conventions import se3_matrix  # noqa: E402
from dwm_data.aria.device import GEN1, GEN2  # noqa: E402
from dwm_data.aria.hands import hand_track  # noqa: E402
from dwm_data.aria.recording import VrsRecording  # noqa: E402
from dwm_data.aria.source import CaptureSource  # noqa: E402
from dwm_data.cameras import project  # noqa: E402
from dwm_data.errors import UnitError  # noqa: E402

GEN2_VRS = "aria/gen2/aria_gen2_unit_test_sequence_with_bluetooth.vrs"
GEN1_VRS = "aria/gen1/aria_unit_test_timecode_sequence_calib.vrs"
ONLINE = "aria/gen1/mps_sample/trajectory/online_calibration.jsonl"


@pytest.fixture(scope="module")
def gen2():
    return VrsRecording(shared_path(GEN2_VRS))


@pytest.fixture(scope="module")
def gen2_capture(tmp_path_factory):
    """A capture folder holding the Gen2 recording and no MPS output at all."""
    root = tmp_path_factory.mktemp("gen2") / "bluetooth"
    root.mkdir()
    (root / "recording.vrs").symlink_to(shared_path(GEN2_VRS))
    return root


def test_device_sensor_size_and_turn_follow_the_recording(gen2, shared_data):
    gen1 = VrsRecording(shared_data(GEN1_VRS))
    assert gen1.device() is GEN1 and gen2.device() is GEN2
    assert gen1.frame_size() == (1408, 1408) and gen2.frame_size() == (2016, 1512)
    assert gen2.frame(0).shape == (1512, 2016, 3)
    assert [int(v) for v in gen2.calibration().get_image_size()] == [2016, 1512]
    assert (GEN1.upright_turns, GEN2.upright_turns) == (1, 0)


def test_gen2_frames_are_undistorted_without_a_turn(gen2):
    """Our upright frame equals projectaria_tools' own undistortion into its linear calibration
    (no turn), and the Gen1 treatment (turned) is another image; intrinsics equal the linear
    calibration's and a 3D point lands on the same pixel."""
    from projectaria_tools.core import calibration

    source = gen2.calibration()
    raw = gen2.frame(1)
    camera = OutputCamera.for_source(source, 504, 378, GEN2)
    focal = float(source.get_focal_lengths()[0]) * 504 / 2016
    linear = calibration.get_linear_camera_calibration(
        504, 378, focal, "reference", source.get_transform_device_camera()
    )
    reference = calibration.distort_by_calibration(raw, linear, source)
    ours = camera.undistort(raw, source)
    assert ours.shape == reference.shape == (378, 504, 3)
    assert np.array_equal(ours, reference)
    turned = OutputCamera.for_source(source, 504, 378, GEN1).undistort(raw, source)
    assert np.abs(turned.astype(float) - reference).mean() > 20  # a sideways frame, cropped

    intr = camera.intrinsics
    assert np.allclose(linear.get_focal_lengths(), [intr.fx, intr.fy])
    assert np.allclose(linear.get_principal_point(), [intr.cx, intr.cy])
    assert np.allclose(
        camera.device_camera(source), se3_matrix(linear.get_transform_device_camera())
    )
    point = np.array([0.15, -0.1, 1.2])
    assert np.allclose(project(point, intr), linear.project(point), atol=1e-6)
    assert camera.valid_mask(source).mean() > 0.95


def test_online_calibration_rescaled_by_each_devices_rule(gen2, shared_data):
    """Online calibrations are stored at the full sensor: Gen2's 4032 x 3024 comes back to the
    2016 x 1512 factory camera only by Gen2's rule; Gen1's 2880 x 2880 -> 1408 crops then halves."""
    factory = gen2.calibration()
    full = factory.rescale([4032, 3024], 2.0)
    back = rescale_to(full, [2016, 1512], GEN2)
    assert np.allclose(back.get_focal_lengths(), factory.get_focal_lengths())
    assert np.allclose(back.get_principal_point(), factory.get_principal_point())
    with pytest.raises(UnitError, match="Aria Gen1's rule") as info:
        rescale_to(full, [2016, 1512], GEN1)
    assert info.value.stage == "calibration"

    (record, *_) = read_online_calibrations(shared_data(ONLINE))
    online = record.get_camera_calib("camera-rgb")
    assert [int(v) for v in online.get_image_size()] == [2880, 2880]
    fitted = fit_to_frames(online, (1408, 1408), GEN1)  # ADT's synthetic video declares 2880
    assert fitted.get_focal_lengths()[0] == pytest.approx(610.01, abs=0.01)


def test_calibration_disagreeing_with_the_frames_is_refused(gen2):
    with pytest.raises(UnitError) as info:
        fit_to_frames(gen2.calibration(), (1920, 1080), GEN2)
    message = str(info.value)
    assert "2016x1512" in message and "1920x1080" in message and "\n" not in message
    assert info.value.stage == "calibration"
    assert fit_to_frames(gen2.calibration(), (2016, 1512), GEN2) is not None


def test_gen2_vio_is_read_as_odometry_device_poses(gen2):
    """The 800 Hz VIO stream, interpolated at the 10 Hz VIO frames, equals their
    T_odometry_bodyimu . T_bodyimu_device to a millimetre; it covers every RGB frame."""
    provider = gen2.provider
    trajectory = gen2.vio_trajectory()
    assert len(trajectory.times_ns) == 237 and trajectory.covers(gen2.timestamps_ns())
    stream = provider.get_stream_id_from_label("vio")
    for i in range(provider.get_num_data(stream)):
        frame = provider.get_vio_data_by_index(stream, i)
        expected = se3_matrix(frame.transform_odometry_bodyimu @ frame.transform_bodyimu_device)
        got = trajectory.at([frame.capture_timestamp_ns])[0]
        assert np.abs(got[:3, 3] - expected[:3, 3]).max() < 1e-3
        cos = (np.trace(got[:3, :3].T @ expected[:3, :3]) - 1) / 2
        assert np.degrees(np.arccos(min(1.0, cos))) < 0.5
        assert np.allclose(frame.gravity_in_odometry, [0, 0, -9.81])  # gravity-aligned world


def test_gen2_capture_without_mps_uses_on_device_poses_and_hands(gen2_capture, gen2):
    """No MPS: poses from VIO, converted to OpenCV camera-to-world of the (unturned) RGB camera;
    hands from the on-device tracking, at the pixels projectaria_tools projects them to."""
    source = CaptureSource.open(find_capture(gen2_capture), 360, 270, 1.0, 0.5)
    assert (source.device, source.pose_source, source.hand_source) == (GEN2, "vio", "device")
    frames = source.frames([0, 1, 2])
    assert frames.shape == (3, 270, 360, 3) and frames.std() > 10
    calib = gen2.calibration()
    device_rgb = se3_matrix(calib.get_transform_device_camera())
    poses = source.poses([0, 1, 2])
    expected = source.trajectory.at(source.times_ns[:3]) @ device_rgb
    assert np.allclose(poses, expected, atol=1e-9)
    assert np.allclose(poses[:, :3, :3] @ poses[:, :3, :3].transpose(0, 2, 1), np.eye(3))

    tracking = source.tracking
    assert tracking.valid.shape == (9, 2) and tracking.valid.all()
    times = tracking.times_ns[[2, 4]]
    track = hand_track(tracking, times, source.device_camera(0), source.camera.intrinsics)
    assert track.valid.all()
    camera_device = np.linalg.inv(source.camera.device_camera(calib))
    for f in range(2):
        for side in range(2):
            device_points = tracking.landmarks_device[[2, 4][f], side]
            cam = device_points @ camera_device[:3, :3].T + camera_device[:3, 3]
            reference = np.array([source.camera.pinhole.project_no_checks(p) for p in cam])
            assert np.allclose(track.keypoints_px[f, side], reference, atol=1e-3)
    wrists = track.keypoints_px[:, :, 0]
    assert np.all(wrists[:, 0, 0] < wrists[:, 1, 0]), "left is left"
    assert np.all(wrists[..., 1] > source.camera.intrinsics.cy), "hands are below eye level"


def test_gen1_capture_without_mps_is_refused_in_one_line(shared_data, tmp_path):
    root = tmp_path / "timecode"
    root.mkdir()
    (root / "recording.vrs").symlink_to(shared_data(GEN1_VRS))
    with pytest.raises(UnitError, match="no MPS closed_loop_trajectory.csv") as info:
        CaptureSource.open(find_capture(root), 96, 64, 1.0, 0.5)
    assert "Gen1 records none" in str(info.value) and "\n" not in str(info.value)
    assert info.value.stage == "capture"
    from dwm_data.registry import SOURCES

    assert ("build-ego" in str(info.value)) == ("build-ego" in SOURCES)


@pytest.mark.slow
def test_gen2_capture_without_mps_through_aria_capture(gen2_capture, gen2, tmp_path):
    """The builder end to end on the real Gen2 file (3 frames: 2 explore, 1 clip frame): VIO
    poses, on-device hands, random initial points, and an upright frame, as projectaria_tools
    undistorts it, not the Gen1-turned one."""
    import logging

    from projectaria_tools.core import calibration

    from dwm_data.builder import UnitContext, make_builder
    from dwm_data.hands.track import HandTrack
    from dwm_data.recipe import load_recipe
    from dwm_data.video import decode

    recipe = load_recipe(
        "tiny",
        [
            "video.frames=1",
            "video.fps=20",
            "aria.min_train_frames=2",
            "aria.max_points=500",
            "aria.splat.steps=10",
            "aria.splat.refine_stop=0",
        ],
    )
    builder = make_builder("aria-capture", recipe, {"capture": str(gen2_capture), "starts": ["f2"]})
    (unit,) = builder.plan()
    builder.setup()
    ctx = UnitContext(tmp_path / "scratch", logging.getLogger("test"))
    (sample,) = builder.process(unit, ctx)

    meta = sample.meta
    assert (meta["device"], meta["poses"], meta["points"]) == ("Gen2", "vio", "random")
    assert meta["hands"] == {"representation": "skeleton", "backend": "aria-device"}
    assert meta["source_frames"] == [2]
    expected = gen2.vio_trajectory().at(gen2.timestamps_ns()[[2]]) @ se3_matrix(
        gen2.calibration().get_transform_device_camera()
    )
    assert np.allclose(sample.camera, expected, atol=1e-6)
    assert HandTrack.from_npz(sample.hands).valid.all()

    source = gen2.calibration()
    focal = float(source.get_focal_lengths()[0]) * 64 / 2016
    linear = calibration.get_linear_camera_calibration(
        64, 48, focal, "reference", source.get_transform_device_camera()
    )
    reference = calibration.distort_by_calibration(gen2.frame(2), linear, source).astype(float)
    turned = OutputCamera.for_source(source, 64, 48, GEN1).undistort(gen2.frame(2), source)
    (video,) = decode(sample.video).astype(float)
    upright_error = np.abs(video - reference).mean()
    assert upright_error < 6 and upright_error < 0.3 * np.abs(video - turned).mean()
    assert decode(sample.hand).max() > 100  # both hands drawn
