"""What differs between Aria Gen1 and Gen2 glasses, in one place.

- Gen1's RGB sensor is mounted sideways: its frames are turned 90 degrees clockwise to stand
  upright. Gen2's frames (2016 x 1512) already are upright landscape.
- Aria's calibration rescale (crop, then scale) knows each device's canonical sensor sizes, so it
  is told which device the calibration came from.
- Gen1 records no poses or hands of its own (they come from MPS); Gen2 records on-device VIO and
  hand tracking in the VRS, which stand in for MPS when a capture has none.

The device is read from the recording (`VrsDataProvider.get_device_version()`, or the version
stored in a folder recording's device calibration), never guessed from the image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dwm_data.errors import UnitError
from dwm_data.extras import require


@dataclass(frozen=True)
class AriaDevice:
    name: str  # projectaria-tools' DeviceVersion member name
    upright_turns: int  # 90-degree clockwise turns that make an RGB frame upright
    records_poses: bool  # on-device VIO and hand tracking are in the VRS

    def version(self) -> Any:
        """projectaria-tools' `DeviceVersion` of this device."""
        calibration = require("projectaria_tools.core.calibration", "aria")
        return getattr(calibration.DeviceVersion, self.name)


GEN1 = AriaDevice("Gen1", upright_turns=1, records_poses=False)
GEN2 = AriaDevice("Gen2", upright_turns=0, records_poses=True)
DEVICES = {device.name: device for device in (GEN1, GEN2)}


def device_for(version: Any) -> AriaDevice:
    """The device of a projectaria-tools `DeviceVersion` (or its name)."""
    name = str(getattr(version, "name", version)).rsplit(".", 1)[-1]
    if name not in DEVICES:
        raise UnitError(
            "recording", f"Aria device version '{name}' is not supported (only Gen1 and Gen2)"
        )
    return DEVICES[name]
