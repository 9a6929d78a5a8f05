"""Where a capture's RGB frames and factory calibration come from.

`VrsRecording` reads a real `.vrs` through projectaria-tools. VRS files cannot be written outside
Meta, so generated captures (tests, the demo) store the same things as a `RgbFolderRecording`:
the raw sensor frames as a lossless video, their device-clock timestamps, and the device
calibration in Aria's own JSON. Both expose the `Recording` interface the builder uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dwm_data.aria.calibration import RGB_LABEL
from dwm_data.errors import UnitError
from dwm_data.extras import require

FOLDER_VIDEO = "rgb.mp4"
FOLDER_TIMES = "rgb_timestamps_ns.txt"
FOLDER_CALIBRATION = "device_calibration.json"


class Recording(Protocol):
    def timestamps_ns(self) -> np.ndarray:
        """(N,) device-clock capture timestamps of the RGB frames."""

    def frame(self, index: int) -> np.ndarray:
        """The raw (sideways) RGB frame as (H, W, 3) uint8."""

    def calibration(self) -> Any:
        """The factory `CameraCalibration` of the RGB camera."""


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
        calibration = require("projectaria_tools.core.calibration", "aria")
        path = self.folder / FOLDER_CALIBRATION
        if not path.exists():
            raise UnitError("calibration", f"{self.folder.name} lacks {FOLDER_CALIBRATION}")
        device = calibration.device_calibration_from_json_string(path.read_text())
        camera = None if device is None else device.get_camera_calib(RGB_LABEL)
        if camera is None:
            raise UnitError("calibration", f"{path.name} has no '{RGB_LABEL}' camera")
        return camera


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
