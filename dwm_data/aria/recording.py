"""Where a capture's RGB frames and factory calibration come from.

`VrsRecording` reads a real `.vrs` through projectaria-tools. VRS files cannot be written outside
Meta, so generated captures (tests, the demo) store the same things as a `RgbFolderRecording`:
the raw sensor frames as a lossless video, their device-clock timestamps, and the device
calibration in Aria's own JSON. Both expose the `Recording` interface the builder uses.

A Gen2 VRS also carries the glasses' own VIO poses and hand tracking; they are read here, so a
capture without MPS can still be posed and its hands drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dwm_data.aria.calibration import RGB_LABEL
from dwm_data.aria.conventions import se3_matrix
from dwm_data.aria.device import AriaDevice, device_for
from dwm_data.aria.hands import HandTracking
from dwm_data.aria.trajectory import Trajectory
from dwm_data.errors import UnitError
from dwm_data.extras import require

FOLDER_VIDEO = "rgb.mp4"
FOLDER_TIMES = "rgb_timestamps_ns.txt"
FOLDER_CALIBRATION = "device_calibration.json"
VIO_LABELS = ("vio_high_frequency", "vio")  # Gen2 on-device VIO: 800 Hz, else 10 Hz
HAND_LABEL = "handtracking"  # Gen2 on-device hand tracking


class Recording(Protocol):
    def timestamps_ns(self) -> np.ndarray:
        """(N,) device-clock capture timestamps of the RGB frames."""

    def frame(self, index: int) -> np.ndarray:
        """The raw RGB frame, in the sensor's orientation, as (H, W, 3) uint8."""

    def calibration(self) -> Any:
        """The factory `CameraCalibration` of the RGB camera."""

    def device(self) -> AriaDevice:
        """The glasses that made the recording."""

    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the raw RGB frames."""

    def vio_trajectory(self) -> Trajectory | None:
        """T_odometry_device from the glasses' own VIO, if the recording holds it."""

    def hand_tracking(self, min_confidence: float) -> HandTracking | None:
        """The glasses' own hand tracking, if the recording holds it."""


class VrsRecording:
    def __init__(self, path: Path):
        data_provider = require("projectaria_tools.core.data_provider", "aria")
        self.path = path
        self.provider = data_provider.create_vrs_data_provider(str(path))
        if self.provider is None:
            raise UnitError("recording", f"{path.name} cannot be opened as a VRS recording")
        labels = {
            self.provider.get_label_from_stream_id(s) for s in self.provider.get_all_streams()
        }
        if RGB_LABEL not in labels:
            raise UnitError("recording", f"{path.name} has no '{RGB_LABEL}' stream")
        self.labels = labels
        self.stream = self.provider.get_stream_id_from_label(RGB_LABEL)
        sensor_data = require("projectaria_tools.core.sensor_data", "aria")
        self.time_domain = sensor_data.TimeDomain.DEVICE_TIME

    def timestamps_ns(self) -> np.ndarray:
        return np.asarray(self.provider.get_timestamps_ns(self.stream, self.time_domain), np.int64)

    def frame(self, index: int) -> np.ndarray:
        image, _ = self.provider.get_image_data_by_index(self.stream, int(index))
        array = image.to_numpy_array()
        if array.ndim != 3 or array.size == 0:
            raise UnitError("recording", f"{self.path.name}: RGB frame {index} did not decode")
        return array

    def calibration(self) -> Any:
        device = self.provider.get_device_calibration()
        camera = None if device is None else device.get_camera_calib(RGB_LABEL)
        if camera is None:
            raise UnitError("calibration", f"{self.path.name} carries no '{RGB_LABEL}' calibration")
        return camera

    def device(self) -> AriaDevice:
        return device_for(self.provider.get_device_version())

    def frame_size(self) -> tuple[int, int]:
        config = self.provider.get_image_configuration(self.stream)
        return int(config.image_width), int(config.image_height)

    def vio_trajectory(self) -> Trajectory | None:
        """The high-frequency stream's T_odometry_device, else the 10 Hz stream's valid poses
        (T_odometry_bodyimu . T_bodyimu_device); the odometry frame is gravity-aligned."""
        label = next((name for name in VIO_LABELS if name in self.labels), None)
        if label is None:
            return None
        stream = self.provider.get_stream_id_from_label(label)
        count = self.provider.get_num_data(stream)
        times, poses = [], []
        for i in range(count):
            if label == "vio_high_frequency":
                pose = self.provider.get_vio_high_freq_data_by_index(stream, i)
                times.append(int(pose.tracking_timestamp.total_seconds() * 1e6) * 1000)
                poses.append(se3_matrix(pose.transform_odometry_device))
                continue
            frame = self.provider.get_vio_data_by_index(stream, i)
            if frame.status.name != "VALID":
                continue
            times.append(int(frame.capture_timestamp_ns))
            poses.append(
                se3_matrix(frame.transform_odometry_bodyimu @ frame.transform_bodyimu_device)
            )
        if not poses:
            raise UnitError("trajectory", f"{self.path.name}: the '{label}' stream holds no pose")
        return Trajectory.from_poses(times, poses)

    def hand_tracking(self, min_confidence: float) -> HandTracking | None:
        if HAND_LABEL not in self.labels:
            return None
        stream = self.provider.get_stream_id_from_label(HAND_LABEL)
        results = [
            self.provider.get_hand_pose_data_by_index(stream, i)
            for i in range(self.provider.get_num_data(stream))
        ]
        return HandTracking.from_results(results, min_confidence) if results else None


class RgbFolderRecording:
    def __init__(self, folder: Path):
        self.folder = folder
        for name in (FOLDER_VIDEO, FOLDER_TIMES):
            if not (folder / name).exists():
                raise UnitError("recording", f"{folder.name} lacks {name}")
        self._frames: np.ndarray | None = None

    def timestamps_ns(self) -> np.ndarray:
        return np.loadtxt(self.folder / FOLDER_TIMES, dtype=np.int64, ndmin=1)

    def frame(self, index: int) -> np.ndarray:
        if self._frames is None:
            from dwm_data.video import decode

            self._frames = decode(self.folder / FOLDER_VIDEO, len(self.timestamps_ns()))
        return self._frames[index]

    def calibration(self) -> Any:
        camera = self._device_calibration().get_camera_calib(RGB_LABEL)
        if camera is None:
            raise UnitError("calibration", f"{FOLDER_CALIBRATION} has no '{RGB_LABEL}' camera")
        return camera

    def device(self) -> AriaDevice:
        return device_for(self._device_calibration().get_device_version())

    def frame_size(self) -> tuple[int, int]:
        height, width = self.frame(0).shape[:2]
        return width, height

    def vio_trajectory(self) -> Trajectory | None:
        return None  # a folder recording stores frames only

    def hand_tracking(self, min_confidence: float) -> HandTracking | None:
        return None

    def _device_calibration(self) -> Any:
        calibration = require("projectaria_tools.core.calibration", "aria")
        path = self.folder / FOLDER_CALIBRATION
        if not path.exists():
            raise UnitError("calibration", f"{self.folder.name} lacks {FOLDER_CALIBRATION}")
        device = calibration.device_calibration_from_json_string(path.read_text())
        if device is None:
            raise UnitError(
                "calibration", f"{FOLDER_CALIBRATION} is not an Aria device calibration"
            )
        return device


def write_folder_recording(
    folder: Path, frames: np.ndarray, timestamps_ns: np.ndarray, device_calibration: Any
) -> None:
    """Store raw frames losslessly (x264 RGB, crf 0), their timestamps and Aria-JSON calibration."""
    from dwm_data.video import Codec, encode

    calibration = require("projectaria_tools.core.calibration", "aria")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FOLDER_VIDEO).write_bytes(
        encode(frames, 30, Codec("libx264rgb", 0, "ultrafast", "rgb24"))
    )
    np.savetxt(folder / FOLDER_TIMES, np.asarray(timestamps_ns, np.int64), fmt="%d")
    text = calibration.device_calibration_to_json_string(device_calibration)
    (folder / FOLDER_CALIBRATION).write_text(json.dumps(json.loads(text), indent=1))
