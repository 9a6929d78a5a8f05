"""`dwm-data build-taste`: real fixed-camera clips (TASTE-Rob or a folder) -> triplets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import builder_command


class HandBackendChoice(StrEnum):
    mediapipe = "mediapipe"
    hamer = "hamer"
    mano_fit = "mano-fit"


class StyleChoice(StrEnum):
    mesh = "mesh"
    skeleton = "skeleton"


def _path(value: Path | None) -> str | None:
    return str(value.resolve()) if value else None


@builder_command("taste")
def build_taste(
    source: Annotated[
        Path,
        typer.Argument(
            help="A TASTE-Rob root (SingleHand/, DoubleHand/, captions.xlsx), a split list "
            "file, or a folder of .mp4 clips with optional <stem>.txt prompts."
        ),
    ],
    hands: Annotated[
        HandBackendChoice,
        typer.Option(help="Hand estimation: mediapipe (offline), hamer, or mano-fit (MANO fit)."),
    ] = HandBackendChoice.mediapipe,
    style: Annotated[
        StyleChoice | None,
        typer.Option(help="Hand video: mesh (official) or skeleton. Default: mesh if possible."),
    ] = None,
    mano_dir: Annotated[
        Path | None, typer.Option(help="Folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (mano-fit).")
    ] = None,
    hamer_dir: Annotated[
        Path | None, typer.Option(help="HaMeR checkout holding _DATA/ (hamer backend).")
    ] = None,
    hamer_checkpoint: Annotated[
        Path | None, typer.Option(help="HaMeR checkpoint (default: the one in _DATA/).")
    ] = None,
    device: Annotated[str, typer.Option(help="Torch device for HaMeR.")] = "cpu",
    clean_static: Annotated[
        bool, typer.Option(help="Inpaint the hands out of the static frame.")
    ] = False,
    captions: Annotated[
        Path | None, typer.Option(help="captions.xlsx (default: the one in SOURCE).")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="What a list file's paths are relative to.")
    ] = None,
    license: Annotated[
        str | None,
        typer.Option(help="Licence to record (default: CC BY-NC 4.0 for TASTE-Rob)."),
    ] = None,
    allow_missing_caption: Annotated[
        bool, typer.Option(help="Keep clips without a caption, with an empty prompt.")
    ] = False,
    hands_files: Annotated[
        bool, typer.Option(help="Take hand landmarks from <clip>.hands.npz, not MediaPipe.")
    ] = False,
) -> dict[str, Any]:
    """Turn real fixed-camera clips into triplets: the clip (8 fps, first 49 frames,
    letterboxed to 720x480 by default), frame 0 as the static scene, and the hands estimated
    and rendered on black. Too-short or broken clips are recorded failures."""
    options = {
        "source": str(source.resolve()),
        "data_root": _path(data_root),
        "captions": _path(captions),
        "backend": hands.value,
        "style": style.value if style else None,
        "mano_dir": _path(mano_dir),
        "hamer_dir": _path(hamer_dir),
        "hamer_checkpoint": _path(hamer_checkpoint),
        "device": device,
        "clean_static": clean_static,
        "license": license,
        "allow_missing_caption": allow_missing_caption,
        "hands_files": hands_files,
    }
    return options
