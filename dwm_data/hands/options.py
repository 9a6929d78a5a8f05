"""The options of every source that estimates hands from frames (build-taste, build-ego): a light
module, pydantic only, so the CLI reads it for `--help`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dwm_data.options import BuilderOptions, Cli


class HandEstimationOptions(BuilderOptions):
    backend: Annotated[Literal["auto", "mediapipe", "hamer", "mano-fit"], Cli(name="hands")] = (
        Field(
            "auto",
            description="Hand estimation: auto (hamer with --hamer-dir, else mano-fit with "
            "--mano-dir, else mediapipe skeletons), mediapipe (offline), hamer, or mano-fit.",
        )
    )
    mano_dir: Annotated[str | None, Cli(path=True)] = Field(
        None, description="Folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (mano-fit)."
    )
    hamer_dir: Annotated[str | None, Cli(path=True)] = Field(
        None, description="HaMeR clone: its hamer package (if not installed) and _DATA/."
    )
    hamer_checkpoint: Annotated[str | None, Cli(path=True)] = Field(
        None, description="HaMeR checkpoint (default: the one in _DATA/)."
    )
    hand_detector: Literal["mediapipe", "vitpose"] = Field(
        "mediapipe",
        description="Where hands are found: mediapipe (DWM's fork), or vitpose (HaMeR's demo: "
        "person boxes from --detector-dir, ViTPose whole-body hand keypoints; --hands hamer).",
    )
    vitpose: Annotated[str | None, Cli(path=True)] = Field(
        None,
        description="ViTPose whole-body weights for --hand-detector vitpose: HaMeR's "
        "wholebody.pth or a transformers folder (default: the one in --hamer-dir's _DATA/).",
    )
    detector_dir: Annotated[str | None, Cli(path=True)] = Field(
        None,
        description="Person detector for --hand-detector vitpose: a transformers folder "
        "(e.g. PekingU/rtdetr_r50vd).",
    )
    device: str = Field("cpu", description="Torch device for HaMeR and ViTPose.")
    hands_files: bool = Field(
        False, description="Take hand keypoints from <stem>.hands.npz, not MediaPipe."
    )
