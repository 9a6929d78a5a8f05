"""A generated capture that stands in for an Aria recording (tests and the demo).

A closed, textured room made of small flat Gaussians is rendered through an equidistant fisheye
(Aria's FISHEYE624 with zero distortion) along a known device path, sideways as the real sensor
delivers it: first the wearer looks around the room (exploration), then a hand reaches in front
of the camera (interaction). The capture holds what a real one holds, in the same formats: frames
(as a folder recording, since VRS cannot be written), Aria-JSON device calibration, an MPS
closed-loop trajectory, online calibration, semidense points and hand tracking (v2 CSV). As on
real glasses, the factory calibration has drifted (its focal length is 5% off) and the online
calibration holds the true one, so a pipeline that ignores the latter misplaces pixels. `ground_truth/scene.ply`
keeps the static room, so the reconstructed static video can be scored against the truth.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dwm_data.aria.conventions import UPRIGHT
from dwm_data.aria.hands import ARIA_TO_OPENPOSE
from dwm_data.aria.recording import write_folder_recording
from dwm_data.extras import require

GROUND_TRUTH = "ground_truth/scene.ply"
FOCAL = 0.6  # the fisheye's focal length, in sensor widths
FACTORY_DRIFT = 1.05
TRAJECTORY_COLUMNS = [
    "graph_uid",
    "tracking_timestamp_us",
    "utc_timestamp_ns",
    "tx_world_device",
    "ty_world_device",
    "tz_world_device",
    "qx_world_device",
    "qy_world_device",
    "qz_world_device",
    "qw_world_device",
    "device_linear_velocity_x_device",
    "device_linear_velocity_y_device",
    "device_linear_velocity_z_device",
    "angular_velocity_x_device",
    "angular_velocity_y_device",
    "angular_velocity_z_device",
    "gravity_x_world",
    "gravity_y_world",
    "gravity_z_world",
    "quality_score",
]
ROOM = np.array(
    [[-1.5, -1.5, 0.0], [1.5, 1.5, 2.2]]
)  # metres, z up (MPS worlds are gravity-aligned)


@dataclass(frozen=True)
class SyntheticSpec:
    sensor: int = 96  # raw square sensor size, px
    rgb_fps: float = 10.0
    explore_seconds: float = 3.0
    interact_seconds: float = 1.3
    surfel_step: float = 0.08  # spacing of the room's Gaussians, metres
    points: int = 2500  # semidense points handed to the splat
    seed: int = 0


def write_synthetic_capture(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write a capture folder under `root`; returns it. Interaction starts at explore_seconds."""
    torch = require("torch", "aria")
    from dwm_data.splat.ply import save_ply

    rng = np.random.default_rng(spec.seed)
    root.mkdir(parents=True, exist_ok=True)
    scene = room_scene(spec.surfel_step, rng)
    (root / "ground_truth").mkdir(exist_ok=True)
    save_ply(scene, root / GROUND_TRUTH)

    frame_times = np.arange(0, spec.explore_seconds + spec.interact_seconds, 1 / spec.rgb_fps)
    t0_ns = 2_000_000_000
    device_camera = rgb_extrinsics()
    focal = FOCAL * spec.sensor
    factory = _device_calibration(spec.sensor, device_camera, focal * FACTORY_DRIFT)

    frames = []
    for t in frame_times:
        world_raw_camera = upright_path(t, spec.explore_seconds) @ np.linalg.inv(UPRIGHT)
        hand = _hand_device(t, spec.explore_seconds)
        content = (
            scene
            if hand is None
            else _with_hand(scene, hand, world_raw_camera @ np.linalg.inv(device_camera), torch)
        )
        frames.append(_render_fisheye(content, world_raw_camera, spec.sensor))
    write_folder_recording(
        root, np.stack(frames), t0_ns + np.round(frame_times * 1e9).astype(np.int64), factory
    )

    slam = root / "mps" / "slam"
    slam.mkdir(parents=True, exist_ok=True)
    pose_times = np.arange(-0.2, frame_times[-1] + 0.2, 0.005)
    poses = [
        upright_path(t, spec.explore_seconds)
        @ np.linalg.inv(UPRIGHT)
        @ np.linalg.inv(device_camera)
        for t in pose_times
    ]
    _write_trajectory(
        slam / "closed_loop_trajectory.csv",
        t0_ns + np.round(pose_times * 1e9).astype(np.int64),
        poses,
    )
    _write_points(slam / "semidense_points.csv.gz", scene["means"].numpy(), spec.points, rng)
    _write_online_calibration(
        slam / "online_calibration.jsonl",
        t0_ns + np.round(np.arange(-0.2, frame_times[-1] + 0.2, 0.5) * 1e9).astype(np.int64),
        _device_calibration(spec.sensor, device_camera, focal),
    )
    hands = root / "mps" / "hand_tracking"
    hands.mkdir(parents=True, exist_ok=True)
    _write_hand_tracking(
        hands / "hand_tracking_results.csv", t0_ns, frame_times, spec.explore_seconds
    )
    clips = {"clips": [{"start": f"{spec.explore_seconds}s", "prompt": "reach towards the wall"}]}
    (root / "clips.json").write_text(json.dumps(clips, indent=1))
    return root


def _texture(u: np.ndarray, v: np.ndarray, face: int) -> np.ndarray:
    """Smooth colour bands plus a coarse checker: enough detail to score a reconstruction."""
    phase = face * 1.3
    r = 0.5 + 0.35 * np.sin(3.1 * u + phase) * np.cos(2.3 * v)
    g = 0.5 + 0.35 * np.sin(1.7 * u + 2.9 * v + phase)
    b = 0.45 + 0.3 * ((np.floor(2.5 * u) + np.floor(2.5 * v)) % 2 - 0.5)
    return np.stack([r, g, b], axis=-1).clip(0.02, 0.98)


def room_scene(step: float, rng: np.random.Generator) -> dict:
    """Six textured faces of a box room as flat Gaussians (thin along each face's normal);
    also the benchmark's scene."""
    torch = require("torch", "aria")
    from dwm_data.splat.model import rgb_to_sh0

    (x0, y0, z0), (x1, y1, z1) = ROOM
    means, colors, normals = [], [], []

    def face(axis: int, value: float, lo: tuple, hi: tuple, index: int) -> None:
        a = np.arange(lo[0] + step / 2, hi[0], step)
        b = np.arange(lo[1] + step / 2, hi[1], step)
        uu, vv = (m.ravel() for m in np.meshgrid(a, b))
        pts = np.insert(np.stack([uu, vv], 1), axis, value, axis=1)
        means.append(pts)
        colors.append(_texture(uu, vv, index))
        normals.append(np.full(len(pts), axis))

    face(2, z0, (x0, y0), (x1, y1), 0)
    face(2, z1, (x0, y0), (x1, y1), 1)
    face(0, x0, (y0, z0), (y1, z1), 2)
    face(0, x1, (y0, z0), (y1, z1), 3)
    face(1, y0, (x0, z0), (x1, z1), 4)
    face(1, y1, (x0, z0), (x1, z1), 5)
    pts = np.concatenate(means) + rng.normal(0, step * 0.05, (sum(map(len, means)), 3))
    normal = np.concatenate(normals)
    scales = np.full((len(pts), 3), math.log(step * 0.6))
    scales[np.arange(len(pts)), normal] = math.log(step * 0.05)
    return {
        "means": torch.tensor(pts, dtype=torch.float32),
        "scales": torch.tensor(scales, dtype=torch.float32),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(len(pts), 1),
        "opacities": torch.full((len(pts),), 5.0),
        "sh0": rgb_to_sh0(torch.tensor(np.concatenate(colors), dtype=torch.float32))[:, None],
    }


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world looking at target with the world's +z up in the image."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = eye
    return pose


def upright_path(t: float, explore: float) -> np.ndarray:
    """The upright camera's pose: a look around the room, then a slow approach to one wall."""
    s = min(t, explore) / explore
    angle = 2 * math.pi * s * 1.15
    eye = np.array(
        [0.35 * math.cos(angle), 0.35 * math.sin(angle), 1.45 + 0.1 * math.sin(3 * angle)]
    )
    look = angle + 1.2 + 0.35 * math.sin(2 * angle)
    target = eye + np.array([math.cos(look), math.sin(look), -0.45 + 0.2 * math.cos(angle)])
    if t > explore:
        k = t - explore
        eye = eye + np.array([0.05 * k, 0.04 * k, -0.03 * k])
        target = target + np.array([0.1 * math.sin(k), 0.0, -0.05 * k])
    return _look_at(eye, target)


def rgb_extrinsics() -> np.ndarray:
    """T_device_camera of the RGB camera: a few degrees of tilt and an offset, like the glasses."""
    rotation = require("scipy.spatial.transform", "aria").Rotation
    pose = np.eye(4)
    pose[:3, :3] = rotation.from_euler("xyz", [8.0, -5.0, 3.0], degrees=True).as_matrix()
    pose[:3, 3] = [0.04, -0.01, 0.005]
    return pose


def _device_calibration(sensor: int, device_camera: np.ndarray, focal: float):
    calibration = require("projectaria_tools.core.calibration", "aria")
    from projectaria_tools.core import sophus

    params = np.zeros(15)
    params[:3] = [focal, (sensor - 1) / 2, (sensor - 1) / 2]
    camera = calibration.CameraCalibration(
        "camera-rgb",
        calibration.CameraModelType.FISHEYE624,
        params,
        sophus.SE3.from_matrix(device_camera),
        sensor,
        sensor,
        sensor / 2,
        math.pi,
        "synthetic-rgb",
    )
    return calibration.DeviceCalibration(
        {"camera-rgb": camera},
        {},
        {},
        {},
        {},
        calibration.DeviceCadExtrinsics(),
        "DVT-S",
        "camera-slam-left",  # Gen1 devices are calibrated relative to this camera
        calibration.DeviceVersion.Gen1,
    )


def _hand_openpose(t: float) -> np.ndarray:
    """A right hand (21 OpenPose keypoints) in the upright camera frame, reaching forward."""
    reach = 0.32 + 0.05 * math.sin(2.0 * t)
    wrist = np.array([0.08, 0.14, reach])
    points = [wrist]
    for finger in range(5):
        base = wrist + np.array([-0.035 + 0.018 * finger, -0.06 + 0.01 * abs(finger - 2), 0.03])
        if finger == 0:
            base = wrist + np.array([-0.045, -0.02, 0.02])
        direction = np.array([-0.01 * (2 - finger), -1.0, 0.4 + 0.1 * math.sin(t)])
        direction /= np.linalg.norm(direction)
        for joint in range(4):
            points.append(base + direction * 0.022 * joint)
    return np.array(points)


def _hand_device(t: float, explore: float) -> np.ndarray | None:
    """Hand keypoints in the device frame, or None when no hand is in view."""
    if t < explore - 0.6:  # the hand enters shortly before the action, so masks matter
        return None
    cam = _hand_openpose(t) @ UPRIGHT[:3, :3].T  # upright camera -> raw camera frame
    device = rgb_extrinsics()
    return cam @ device[:3, :3].T + device[:3, 3]


def _with_hand(scene: dict, hand_device: np.ndarray, world_device: np.ndarray, torch) -> dict:
    """The room plus a skin-coloured hand made of Gaussians along its bones."""
    from dwm_data.hands.track import BONES
    from dwm_data.splat.model import rgb_to_sh0

    world = hand_device @ world_device[:3, :3].T + world_device[:3, 3]
    steps = np.linspace(0, 1, 4)[:, None]
    samples = np.concatenate([world[a] + (world[b] - world[a]) * steps for a, b in BONES])
    count = len(samples)
    hand = {
        "means": torch.tensor(samples, dtype=torch.float32),
        "scales": torch.full((count, 3), math.log(0.008)),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(count, 1),
        "opacities": torch.full((count,), 4.0),
        "sh0": rgb_to_sh0(torch.tensor([[0.85, 0.62, 0.5]]).repeat(count, 1))[:, None],
    }
    return {k: torch.cat([scene[k], hand[k]]) for k in scene}


def _render_fisheye(params: dict, world_camera: np.ndarray, sensor: int) -> np.ndarray:
    torch = require("torch", "aria")
    from dwm_data.cameras import Intrinsics
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import render_views

    focal = FOCAL * sensor
    intr = Intrinsics(focal, focal, (sensor - 1) / 2, (sensor - 1) / 2, sensor, sensor)
    viewmat = torch.tensor(np.linalg.inv(world_camera), dtype=torch.float32)[None]
    K = torch.tensor(gsplat_K(intr), dtype=torch.float32)[None]
    image = render_views(params, viewmat, K, sensor, sensor, camera_model="fisheye")[0]
    return (image.numpy() * 255 + 0.5).astype(np.uint8)


def _write_trajectory(path: Path, times_ns: np.ndarray, poses: list[np.ndarray]) -> None:
    rotation = require("scipy.spatial.transform", "aria").Rotation
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRAJECTORY_COLUMNS)
        for t, pose in zip(times_ns, poses, strict=True):
            qx, qy, qz, qw = rotation.from_matrix(pose[:3, :3]).as_quat()
            writer.writerow(
                ["synthetic-graph", t // 1000, -1, *pose[:3, 3], qx, qy, qz, qw]
                + [0.0] * 6
                + [0.0, 0.0, -9.81, 1.0]
            )


def _write_online_calibration(path: Path, times_ns: np.ndarray, device) -> None:
    """MPS online calibration records (one JSON line each) holding the true camera."""
    calibration = require("projectaria_tools.core.calibration", "aria")
    cameras = json.loads(calibration.device_calibration_to_json_string(device))[
        "CameraCalibrations"
    ]
    with open(path, "w") as handle:
        for t in times_ns:
            record = {
                "utc_timestamp_ns": -1,
                "tracking_timestamp_us": int(t // 1000),
                "ImuCalibrations": [],
                "CameraCalibrations": cameras,
            }
            handle.write(json.dumps(record) + "\n")


def _write_points(path: Path, surface: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Semidense points: a random subset of the surface with centimetre noise."""
    chosen = surface[rng.choice(len(surface), size=min(count, len(surface)), replace=False)]
    chosen = chosen + rng.normal(0, 0.01, chosen.shape)
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["uid", "graph_uid", "px_world", "py_world", "pz_world", "inv_dist_std", "dist_std"]
        )
        for uid, (x, y, z) in enumerate(chosen):
            writer.writerow([uid, "synthetic-graph", x, y, z, 1e-4, 0.005])


def _write_hand_tracking(path: Path, t0_ns: int, frame_times: np.ndarray, explore: float) -> None:
    """MPS hand tracking v2 rows at the frame times (right hand only), Aria landmark order."""
    openpose_to_aria = np.zeros(21, int)
    for openpose, aria in enumerate(ARIA_TO_OPENPOSE):
        if aria >= 0:
            openpose_to_aria[aria] = openpose
    header = ["tracking_timestamp_us"]
    for side in ("left", "right"):
        header.append(f"{side}_tracking_confidence")
        header += [f"t{a}_{side}_landmark_{i}_device" for i in range(21) for a in "xyz"]
    for side in ("left", "right"):
        header += [f"{c}_{side}_device_wrist" for c in ("tx", "ty", "tz", "qx", "qy", "qz", "qw")]
    for side in ("left", "right"):
        header += [f"n{a}_{side}_{part}_device" for part in ("palm", "wrist") for a in "xyz"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for t in frame_times:
            hand = _hand_device(t, explore)
            if hand is None:
                continue
            aria = hand[openpose_to_aria]
            aria[20] = hand[[5, 9, 13, 17]].mean(axis=0)  # palm centre
            normal = np.cross(hand[5] - hand[0], hand[17] - hand[0])
            normal /= np.linalg.norm(normal)
            left = [-1.0] + [0.0] * 63
            right = [1.0, *aria.ravel()]
            wrists = [0.0] * 6 + [1.0] + [*hand[0], 0.0, 0.0, 0.0, 1.0]
            normals = [0.0] * 6 + [*normal, *normal]
            writer.writerow(
                [int(round((t0_ns + t * 1e9) / 1000)), *left, *right, *wrists, *normals]
            )
