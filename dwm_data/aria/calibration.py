"""The RGB camera: factory or online calibration, and undistortion to an upright pinhole camera.

The output camera is chosen once per capture (a linear model at the recipe size, turned upright
as the device needs), so every frame lands in the same pinhole image whatever calibration it was
taken with. Online calibrations are stored at the sensor's full size (Gen1 2880 x 2880, Gen2
4032 x 3024) even for smaller recordings, and some recordings declare a calibration at another
size than their frames; both are rescaled with Aria's crop-then-scale rule for the device
(`rescale_camera_calibration`), not a plain ratio, or refused.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from dwm_data.aria.conventions import se3_matrix, turn, turn_image, upright_pixels
from dwm_data.aria.device import AriaDevice
from dwm_data.cameras import Intrinsics
from dwm_data.errors import UnitError
from dwm_data.extras import require

RGB_LABEL = "camera-rgb"


def _calibration() -> Any:
    return require("projectaria_tools.core.calibration", "aria")


@dataclass(frozen=True)
class OutputCamera:
    """The upright pinhole image every frame is resampled into."""

    pinhole: Any  # projectaria CameraCalibration, LINEAR, raw sensor orientation
    intrinsics: Intrinsics  # the same camera after the device's upright turn
    turns: int  # 90-degree clockwise turns from the raw to the upright image

    @classmethod
    def for_source(
        cls, source: Any, width: int, height: int, device: AriaDevice, focal_scale: float = 1.0
    ) -> OutputCamera:
        """A pinhole at width x height (upright) with the source's focal length scaled to size.

        `focal_scale` < 1 widens the view (more of the fisheye circle, black corners later).
        """
        calib = _calibration()
        src_w, src_h = (int(v) for v in source.get_image_size())
        focal = float(source.get_focal_lengths()[0]) * max(width, height) / max(src_w, src_h)
        focal *= focal_scale
        turns = device.upright_turns
        raw_w, raw_h = (height, width) if turns % 2 else (width, height)
        pinhole = calib.get_linear_camera_calibration(
            raw_w, raw_h, focal, "camera-rgb-pinhole", source.get_transform_device_camera()
        )
        centre = np.asarray(pinhole.get_principal_point(), dtype=np.float64)
        cx, cy = (float(v) for v in (upright_pixels(centre, raw_h) if turns else centre))
        return cls(pinhole, Intrinsics(focal, focal, cx, cy, width, height), turns)

    def undistort(self, raw: np.ndarray, source: Any) -> np.ndarray:
        """Raw sensor image -> upright pinhole image (bilinear)."""
        calib = _calibration()
        return turn_image(calib.distort_by_calibration(raw, self.pinhole, source), self.turns)

    def valid_mask(self, source: Any) -> np.ndarray:
        """Pixels of the output image that see inside the fisheye's calibrated circle."""
        calib = _calibration()
        w, h = (int(v) for v in source.get_image_size())
        ones = np.full((h, w), 255, np.uint8)
        warped = calib.distort_label_by_calibration(ones, self.pinhole, source)
        return turn_image(warped, self.turns) > 0

    def device_camera(self, source: Any) -> np.ndarray:
        """T_device_camera of the upright output camera (the pinhole shares the source's)."""
        return se3_matrix(source.get_transform_device_camera()) @ turn(self.turns)


class RgbCalibrations:
    """The RGB calibration in force at a timestamp: nearest online record, else the factory one."""

    def __init__(self, factory: Any, online: list[tuple[int, Any]] | None = None):
        self.factory = factory
        self.online = sorted(online or [], key=lambda item: item[0])
        self._times = [t for t, _ in self.online]

    @classmethod
    def from_records(cls, factory: Any, records: list[Any], device: AriaDevice) -> RgbCalibrations:
        """Online records (`mps.read_online_calibration`) rescaled to the recording's size."""
        size = [int(v) for v in factory.get_image_size()]
        online = []
        for record in records:
            cam = record.get_camera_calib(RGB_LABEL)
            if cam is None:
                continue
            t_ns = int(record.tracking_timestamp.total_seconds() * 1e6) * 1000
            online.append((t_ns, rescale_to(cam, size, device)))
        return cls(factory, online)

    @property
    def source_name(self) -> str:
        return "online" if self.online else "factory"

    def at(self, t_ns: int) -> Any:
        if not self.online:
            return self.factory
        i = bisect.bisect_left(self._times, t_ns)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.online)]
        best = min(candidates, key=lambda j: abs(self._times[j] - t_ns))
        return self.online[best][1]

    def time_offset_ns(self, t_ns: int) -> int:
        """The camera's clock offset to the device (IMU) clock, from the online calibration."""
        return int(round(self.at(t_ns).get_time_offset_sec_device_camera() * 1e9))


def rescale_to(camera: Any, size: list[int], device: AriaDevice) -> Any:
    """A calibration at another sensor resolution, by Aria's own (crop, then scale) rule."""
    calib = _calibration()
    have = [int(v) for v in camera.get_image_size()]
    if have == size:
        return camera
    try:
        return calib.rescale_camera_calibration(camera, size, device.version())
    except RuntimeError as exc:
        raise UnitError(
            "calibration",
            f"cannot rescale the RGB calibration {have[0]}x{have[1]} -> {size[0]}x{size[1]} "
            f"by Aria {device.name}'s rule: {exc}",
        ) from exc


def fit_to_frames(camera: Any, frame_size: tuple[int, int], device: AriaDevice) -> Any:
    """The calibration at the frames' size: a recording may declare its camera at another
    resolution (ADT's synthetic video: 2880 x 2880 for 1408 x 1408 frames), which would halve
    the focal length and leave most of the output outside the image."""
    have = tuple(int(v) for v in camera.get_image_size())
    if have == tuple(frame_size):
        return camera
    try:
        return rescale_to(camera, list(frame_size), device)
    except UnitError as exc:
        raise UnitError(
            "calibration",
            f"the RGB calibration is for {have[0]}x{have[1]} images but the frames are "
            f"{frame_size[0]}x{frame_size[1]}, and Aria {device.name}'s rescale does not map "
            "one to the other",
        ) from exc
