"""Aria readers on the real public fixtures in ../shared/data/aria (projectaria_tools' test data)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("projectaria_tools")

from dwm_data.aria.calibration import OutputCamera, RgbCalibrations  # noqa: E402
from dwm_data.aria.capture import find_capture, read_online_calibrations, read_points  # noqa: E402
from dwm_data.aria.conventions import UPRIGHT, camera_to_world, se3_matrix, upright_pixels  # noqa: E402
from dwm_data.aria.device import GEN1 as GEN1_DEVICE  # noqa: E402
from dwm_data.aria.hands import HandTracking, hand_track  # noqa: E402
from dwm_data.aria.recording import VrsRecording  # noqa: E402
from dwm_data.aria.trajectory import Trajectory  # noqa: E402
from dwm_data.cameras import project  # noqa: E402
from dwm_data.errors import UnitError  # noqa: E402

GEN1 = "aria/gen1"


@pytest.fixture
def timecode_vrs(shared_data):
    return VrsRecording(shared_data(f"{GEN1}/aria_unit_test_timecode_sequence_calib.vrs"))


@pytest.fixture
def mps_sample(shared_data):
    return shared_data(f"{GEN1}/mps_sample")


def test_vrs_frames_and_factory_calibration(timecode_vrs):
    times = timecode_vrs.timestamps_ns()
    assert len(times) == 4 and np.all(np.diff(times) > 0)
    frame = timecode_vrs.frame(0)
    assert frame.shape == (1408, 1408, 3) and frame.dtype == np.uint8 and frame.std() > 5
    calib = timecode_vrs.calibration()
    assert str(calib.get_model_name()).endswith("FISHEYE624")
    assert list(calib.get_image_size()) == [1408, 1408]
    assert 550 < calib.get_focal_lengths()[0] < 650


def test_vrs_without_rgb_stream_is_a_clear_failure(shared_data):
    with pytest.raises(UnitError, match="no 'camera-rgb' stream") as info:
        VrsRecording(shared_data(f"{GEN1}/aria_digital_twin_test_data/depth_images.vrs"))
    assert info.value.stage == "recording"


def test_undistorted_upright_pinhole(timecode_vrs):
    """Our upright intrinsics agree with projectaria's own rotated calibration, and a 3D point
    lands on the same pixel through either path."""
    from projectaria_tools.core import calibration

    source = timecode_vrs.calibration()
    camera = OutputCamera.for_source(source, 96, 64, GEN1_DEVICE)
    rotated = calibration.rotate_camera_calib_cw90deg(camera.pinhole)
    assert list(rotated.get_image_size()) == [96, 64]
    assert np.allclose(rotated.get_principal_point(), [camera.intrinsics.cx, camera.intrinsics.cy])
    assert np.allclose(rotated.get_focal_lengths(), [camera.intrinsics.fx, camera.intrinsics.fy])
    assert np.allclose(
        se3_matrix(rotated.get_transform_device_camera()), camera.device_camera(source), atol=1e-9
    )
    point_raw = np.array([0.1, -0.05, 1.0])
    raw_px = np.asarray(camera.pinhole.project(point_raw))
    ours = project(np.linalg.inv(UPRIGHT)[:3, :3] @ point_raw, camera.intrinsics)
    assert np.allclose(ours, upright_pixels(raw_px, camera.pinhole.get_image_size()[1]), atol=1e-6)

    image = camera.undistort(timecode_vrs.frame(0), source)
    assert image.shape == (64, 96, 3) and image.std() > 5
    valid = camera.valid_mask(source)
    assert valid.shape == (64, 96) and valid.mean() > 0.9


def test_adt_ground_truth_reprojects_depth_between_frames(shared_data):
    """Frame 0's depth moved into frame 2 with T_world_device . T_device_camera matches frame 2's
    colours better than no motion and better than the inverted extrinsic."""
    from projectaria_tools.core import data_provider
    from projectaria_tools.core.stream_id import StreamId

    root = shared_data(f"{GEN1}/aria_digital_twin_test_data")
    files = find_capture(root)
    recording = files.open_recording()
    calib = recording.calibration()
    trajectory = Trajectory.read(files.trajectory)
    rgb_times = recording.timestamps_ns()
    world_device = trajectory.at(rgb_times[[0, 2]])
    depth_provider = data_provider.create_vrs_data_provider(str(root / "depth_images.vrs"))
    depth = depth_provider.get_image_data_by_index(StreamId("345-1"), 0)[0].to_numpy_array()
    depth = depth.astype(np.float64) / 1000.0
    rgb0, rgb2 = recording.frame(0).astype(float), recording.frame(2).astype(float)
    us, vs = (a.ravel() for a in np.meshgrid(np.arange(4, 1408, 16), np.arange(4, 1408, 16)))
    keep = depth[vs, us] > 0
    us, vs = us[keep], vs[keep]
    rays = np.array(
        [calib.unproject_no_checks(np.array([u, v], float)) for u, v in zip(us, vs, strict=True)]
    )
    points = rays / np.linalg.norm(rays, axis=1, keepdims=True) * depth[vs, us][:, None]

    def error(device_camera: np.ndarray, motion: bool = True) -> float:
        c0, c2 = (camera_to_world(w, device_camera, turns=0) for w in world_device)
        if not motion:
            c0 = c2 = np.eye(4)
        moved = points @ c0[:3, :3].T + c0[:3, 3]
        moved = (moved - c2[:3, 3]) @ c2[:3, :3]
        diffs = []
        for k, p in enumerate(moved):
            q = calib.project(p)
            if q is None:
                continue
            x, y = int(round(q[0])), int(round(q[1]))
            if 0 <= x < 1408 and 0 <= y < 1408:
                diffs.append(np.abs(rgb2[y, x] - rgb0[vs[k], us[k]]).mean())
        assert len(diffs) > 0.8 * len(points)
        return float(np.mean(diffs))

    device_camera = se3_matrix(calib.get_transform_device_camera())
    right, still, wrong = (
        error(device_camera),
        error(device_camera, motion=False),
        error(np.linalg.inv(device_camera)),
    )
    assert right < 0.8 * still and right < 0.8 * wrong, (right, still, wrong)


def test_mps_trajectory_interpolates_between_samples(mps_sample):
    trajectory = Trajectory.read(mps_sample / "trajectory" / "closed_loop_trajectory.csv")
    assert len(trajectory.times_ns) == 11517
    t = trajectory.times_ns
    at_samples = trajectory.at(t[[10, 11]])
    assert np.allclose(at_samples, trajectory.world_device[[10, 11]], atol=1e-9)
    middle = trajectory.at([(t[10] + t[11]) // 2])[0]
    expected = 0.5 * (trajectory.world_device[10, :3, 3] + trajectory.world_device[11, :3, 3])
    assert np.allclose(middle[:3, 3], expected, atol=1e-6)
    assert np.allclose(middle[:3, :3] @ middle[:3, :3].T, np.eye(3), atol=1e-9)
    with pytest.raises(UnitError, match="trajectory covers") as info:
        trajectory.at([t[-1] + 5_000_000_000])
    assert info.value.stage == "trajectory"


def test_online_calibration_is_rescaled_by_aria_rule(mps_sample, timecode_vrs):
    records = read_online_calibrations(mps_sample / "trajectory" / "online_calibration.jsonl")
    assert len(records) == 122
    calibs = RgbCalibrations.from_records(timecode_vrs.calibration(), records, GEN1_DEVICE)
    assert calibs.source_name == "online"
    online = calibs.at(calibs.online[5][0] + 1000)
    assert list(online.get_image_size()) == [1408, 1408]
    # crop 32 px then halve: f = 1220.02 / 2 = 610.01, not 1220.02 * 1408 / 2880 = 596.45
    assert online.get_focal_lengths()[0] == pytest.approx(610.01, abs=0.01)


def test_semidense_points_filtered_by_confidence(mps_sample):
    points = read_points(mps_sample / "trajectory" / "global_points.csv.gz", 1e-3, 5e-2)
    assert points.shape == (22081, 3) and np.isfinite(points).all()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_hand_tracking_projects_below_and_in_front(mps_sample, timecode_vrs, version):
    records = read_online_calibrations(mps_sample / "trajectory" / "online_calibration.jsonl")
    source = RgbCalibrations.from_records(timecode_vrs.calibration(), records, GEN1_DEVICE).online[
        0
    ][1]
    camera = OutputCamera.for_source(
        source, 96, 64, GEN1_DEVICE, focal_scale=0.6
    )  # wide: hands sit low
    tracking = HandTracking.read(
        mps_sample / "hand_tracking" / f"hand_tracking_results_{version}.csv"
    )
    assert tracking.landmarks_device.shape == (8, 2, 21, 3)
    assert tracking.valid.sum() == 6
    track = hand_track(tracking, tracking.times_ns, camera.device_camera(source), camera.intrinsics)
    assert np.array_equal(track.valid, tracking.valid)
    wrists = track.keypoints_px[..., 0, :][track.valid]
    inside = (wrists[:, 0] >= 0) & (wrists[:, 0] < 96) & (wrists[:, 1] < 64)
    assert inside.mean() >= 0.8, wrists  # one right hand is 10 cm from the lens, off to the side
    assert np.all(wrists[:, 1] > camera.intrinsics.cy), "hands are below eye level"
    depth = track.keypoints_cam[..., 2][track.valid]
    assert np.all((depth > 0.05) & (depth < 0.8))
    both = track.valid.all(axis=1)
    assert np.all(track.keypoints_px[both, 0, 0, 0] < track.keypoints_px[both, 1, 0, 0]), (
        "left is left"
    )
    # OpenPose order: each finger's tip is further from the wrist than its base
    cam = track.keypoints_cam[track.valid]
    for base, tip in ((5, 8), (9, 12), (13, 16), (17, 20)):
        assert np.all(
            np.linalg.norm(cam[:, tip] - cam[:, 0], axis=1)
            > np.linalg.norm(cam[:, base] - cam[:, 0], axis=1)
        )
