"""`aria-capture` options and its recipe section (a light module: the CLI reads it for `--help`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dwm_data.options import BuilderOptions, Cli
from dwm_data.splat.config import SplatConfig

HandSource = Literal["mps", "mediapipe", "mano-fit", "hamer"]


class AriaOptions(BuilderOptions):
    capture: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="A capture folder (an Aria Gen1 or Gen2 .vrs, with MPS outputs or, on "
        "Gen2, without), or a folder of captures."
    )
    starts: Annotated[list[str], Cli(name="start")] = Field(
        [],
        description="Where an interaction clip starts: seconds from the first frame (12.5s) or "
        "a frame (f300); repeatable. Default: each capture's clips.json.",
    )
    prompt: str = Field("", description="Text prompt for clips given by --start.")
    license: str = Field(
        "unspecified", description="Licence of the capture, recorded in every sample."
    )
    hands: HandSource = Field(
        "mps",
        description="Hand source: mps (Aria's hand tracking: MPS, else a Gen2 recording's "
        "on-device tracking), mediapipe, mano-fit or hamer.",
    )
    mano_dir: Annotated[str | None, Cli(path=True)] = Field(
        None, description="MANO model folder: with --hands mps, fit MANO and render meshes."
    )
    hamer_dir: Annotated[str | None, Cli(path=True)] = Field(
        None, description="HaMeR files, for --hands hamer."
    )
    splats: Annotated[str | None, Cli(out="splats")] = Field(
        None, description="Folder to keep each capture's trained splat in, as <capture>.ply."
    )


class AriaSettings(BaseModel):
    """The recipe's `aria` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    focal_scale: float = Field(1.0, gt=0)  # output focal length relative to the fisheye's
    train_frames: int = Field(120, gt=0)  # exploration frames given to the splat (spread evenly)
    min_train_frames: int = Field(8, gt=0)
    heldout_every: int = Field(8, gt=0)  # every n-th of those is held out to score the splat
    train_width: int = Field(320, gt=0)  # the splat trains at most this wide; renders full size
    hand_margin: float = Field(0.25, ge=0)  # masks grow the hands' hull by this fraction
    min_hand_confidence: float = Field(0.5, ge=0, le=1)
    max_inv_dist_std: float = 1e-3  # semidense point filter (projectaria-tools' defaults)
    max_dist_std: float = 5e-2
    max_points: int = Field(100_000, gt=0)
    splat: SplatConfig = SplatConfig()
