"""`dwm-data aria-capture`: Aria captures (VRS + MPS) -> triplets through a Gaussian splat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import OutArg, builder_command


@builder_command("aria-capture")
def aria_capture(
    capture: Annotated[
        Path,
        typer.Argument(help="A capture folder (.vrs + MPS outputs), or a folder of captures."),
    ],
    out: OutArg,
    start: Annotated[
        list[str] | None,
        typer.Option(
            "--start",
            help="Where an interaction clip starts: seconds from the first frame (12.5s) or a "
            "frame (f300); repeatable. Default: each capture's clips.json.",
        ),
    ] = None,
    prompt: Annotated[str, typer.Option(help="Text prompt for clips given by --start.")] = "",
    hands: Annotated[
        str,
        typer.Option(help="Hand source: mps (MPS hand tracking), mediapipe, mano-fit or hamer."),
    ] = "mps",
    mano_dir: Annotated[
        Path | None,
        typer.Option(help="MANO model folder: with --hands mps, fit MANO and render meshes."),
    ] = None,
    hamer_dir: Annotated[Path | None, typer.Option(help="HaMeR files, for --hands hamer.")] = None,
    license: Annotated[
        str, typer.Option(help="Licence of the capture, recorded in every sample.")
    ] = "unspecified",
) -> dict[str, Any]:
    """Train a Gaussian splat of each capture's scene on the frames before the action and render
    it along the interaction cameras: static video beside the recorded one, hands from MPS.

    The trained splats are kept as OUT/splats/<capture>.ply.
    """
    options = {
        "capture": str(capture.resolve()),
        "starts": list(start or []),
        "prompt": prompt,
        "license": license,
        "hands": hands,
        "mano_dir": str(mano_dir.resolve()) if mano_dir else None,
        "hamer_dir": str(hamer_dir.resolve()) if hamer_dir else None,
        "splats": str((out / "splats").resolve()),
    }
    return options
