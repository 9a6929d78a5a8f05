"""An opened capture: what every step of the builder reads, with the two things it asks of it
(camera poses and undistorted frames at given RGB frames), so pose and calibration rules live
in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dwm_data.aria.calibration import OutputCamera, RgbCalibrations
from dwm_data.aria.capture import CaptureFiles, read_online_calibrations
from dwm_data.aria.hands import HandTracking
from dwm_data.aria.recording import Recording
from dwm_data.aria.trajectory import Trajectory
from dwm_data.errors import UnitError


@dataclass
class CaptureSource:
    files: CaptureFiles
    recording: Recording
    times_ns: np.ndarray  # RGB frame timestamps, device clock
    calibrations: RgbCalibrations
    trajectory: Trajectory
    camera: OutputCamera
    tracking: HandTracking | None

    @classmethod
    def open(
        cls,
        files: CaptureFiles,
        width: int,
        height: int,
        focal_scale: float,
        min_hand_confidence: float,
    ) -> CaptureSource:
        for what, path in (
            ("closed_loop_trajectory.csv", files.trajectory),
            ("semidense_points.csv.gz", files.points),
        ):
            if path is None:
                raise UnitError("capture", f"{files.name} has no MPS {what}")
        recording = files.open_recording()
        factory = recording.calibration()
        times = recording.timestamps_ns()
        if len(times) < 2:
            raise UnitError("recording", f"{files.name} holds {len(times)} RGB frame(s)")
        calibrations = (
            RgbCalibrations.from_records(
                factory, read_online_calibrations(files.online_calibration)
            )
            if files.online_calibration
            else RgbCalibrations(factory)
        )
        tracking = (
            HandTracking.read(files.hand_tracking, min_hand_confidence)
            if files.hand_tracking
            else None
        )
        return cls(
            files=files,
            recording=recording,
            times_ns=times,
            calibrations=calibrations,
            trajectory=Trajectory.read(files.trajectory),
            camera=OutputCamera.for_source(factory, width, height, focal_scale),
            tracking=tracking,
        )

    def calibration_at(self, index: int) -> Any:
        return self.calibrations.at(int(self.times_ns[index]))

    def device_camera(self, index: int) -> np.ndarray:
        """T_device_camera of the upright output camera at an RGB frame."""
        return self.camera.device_camera(self.calibration_at(index))

    def poses(self, indices: list[int]) -> np.ndarray:
        """(N, 4, 4) OpenCV camera-to-world of the output camera at RGB frames: the trajectory
        at the frame time moved onto the device clock (online time offset), composed with the
        camera's extrinsics in force then."""
        stamps = self.times_ns[indices]
        corrected = np.array([t - self.calibrations.time_offset_ns(int(t)) for t in stamps])
        extrinsics = np.stack([self.device_camera(i) for i in indices])
        return self.trajectory.at(corrected) @ extrinsics

    def frames(self, indices: list[int]) -> np.ndarray:
        """(N, H, W, 3) uint8 frames undistorted into the output camera, each with its own
        calibration."""
        return np.stack(
            [
                self.camera.undistort(self.recording.frame(i), self.calibration_at(i))
                for i in indices
            ]
        )
