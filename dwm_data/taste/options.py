"""`build-taste` options and its recipe section (a light module: the CLI reads it for `--help`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dwm_data.hands.options import HandEstimationOptions
from dwm_data.options import Cli


class TasteSection(BaseModel):
    """The recipe's `taste:` knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # TASTE-Rob publishes no intrinsics; this field of view is assumed (and recorded) for the
    # metric hand keypoints and MANO fits.
    hfov_deg: float = Field(60.0, gt=0, lt=180)
    # Hands are estimated on frames at least this tall (MediaPipe finds no hands at 64x48).
    detect_height: int = Field(480, gt=0)
    max_gap: int = Field(2, ge=0)  # frames bridged by the temporal clean-up


class TasteOptions(HandEstimationOptions):
    source: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="A TASTE-Rob root (SingleHand/, DoubleHand/, captions.xlsx), a split list "
        "file, or a folder of video clips with optional <stem>.txt prompts."
    )
    data_root: Annotated[str | None, Cli(path=True)] = Field(
        None, description="What a list file's paths are relative to (default: the list's folder)."
    )
    captions: Annotated[str | None, Cli(path=True)] = Field(
        None, description="captions.xlsx (default: the one in SOURCE)."
    )
    style: Literal["mesh", "skeleton"] | None = Field(
        None, description="Hand video: mesh (official) or skeleton. Default: mesh if possible."
    )
    clean_static: bool = Field(False, description="Inpaint the hands out of the static frame.")
    license: str | None = Field(
        None, description="Licence to record (default: CC BY-NC 4.0 for TASTE-Rob)."
    )
    allow_missing_caption: bool = Field(
        False, description="Keep clips without a caption, with an empty prompt."
    )
