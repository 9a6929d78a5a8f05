"""An opened capture: what every step of the builder reads, with the two things it asks of it
(camera poses and undistorted frames at given RGB frames), so pose and calibration rules live
in one place.

Poses and hands come from MPS when the capture has its files, else from the recording itself
(a Gen2 VRS holds on-device VIO and hand tracking); a capture with neither is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dwm_data.aria.calibration import OutputCamera, RgbCalibrations, fit_to_frames
from dwm_data.aria.capture import CaptureFiles, read_online_calibrations
from dwm_data.aria.device import AriaDevice
from dwm_data.aria.hands import HandTracking
from dwm_data.aria.recording import Recording
from dwm_data.aria.trajectory import Trajectory
from dwm_data.errors import UnitError


@dataclass
class CaptureSource:
    files: CaptureFiles
    recording: Recording
    device: AriaDevice
    times_ns: np.ndarray  # RGB frame timestamps, device clock
    calibrations: RgbCalibrations
    trajectory: Trajectory
    pose_source: str  # "mps" (closed loop, or ADT ground truth) or "vio" (on-device)
    camera: OutputCamera
    tracking: HandTracking | None
    hand_source: str | None  # "mps", "device" (on-device tracking) or None

    @classmethod
    def open(
        cls,
        files: CaptureFiles,
        width: int,
        height: int,
        focal_scale: float,
        min_hand_confidence: float,
    ) -> CaptureSource:
        recording = files.open_recording()
        device = recording.device()
        factory = fit_to_frames(recording.calibration(), recording.frame_size(), device)
        times = recording.timestamps_ns()
        if len(times) < 2:
            raise UnitError("recording", f"{files.name} holds {len(times)} RGB frame(s)")
        calibrations = (
            RgbCalibrations.from_records(
                factory, read_online_calibrations(files.online_calibration), device
            )
            if files.online_calibration
            else RgbCalibrations(factory)
        )
        trajectory, pose_source = _trajectory(files, recording, device)
        if files.hand_tracking:
            tracking = HandTracking.read(files.hand_tracking, min_hand_confidence)
            hand_source = "mps"
        else:
            tracking = recording.hand_tracking(min_hand_confidence)
            hand_source = None if tracking is None else "device"
        return cls(
            files=files,
            recording=recording,
            device=device,
            times_ns=times,
            calibrations=calibrations,
            trajectory=trajectory,
            pose_source=pose_source,
            camera=OutputCamera.for_source(factory, width, height, device, focal_scale),
            tracking=tracking,
            hand_source=hand_source,
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


def _trajectory(
    files: CaptureFiles, recording: Recording, device: AriaDevice
) -> tuple[Trajectory, str]:
    """MPS's closed loop when the capture has it, else the recording's own VIO, else one line
    saying what would pose the capture."""
    if files.trajectory is not None:
        return Trajectory.read(files.trajectory), "mps"
    vio = recording.vio_trajectory()
    if vio is not None:
        return vio, "vio"
    from dwm_data.registry import SOURCES

    ego = ", or build-ego (structure from motion)" if "build-ego" in SOURCES else ""
    raise UnitError(
        "capture",
        f"{files.name} has no MPS closed_loop_trajectory.csv and its recording no on-device VIO "
        f"(Aria {device.name}{' records none' if not device.records_poses else ''}): "
        f"run MPS on it{ego}",
    )
