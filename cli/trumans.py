"""`dwm-data render-trumans`: TRUMANS recordings rendered in Blender into triplets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import builder_command


@builder_command("render-trumans")
def render_trumans(
    root: Annotated[
        Path,
        typer.Argument(help="The TRUMANS release (Recordings_blend/, Actions/, smplx_result/)."),
    ],
    scene: Annotated[
        list[str] | None, typer.Option(help="Only this scene (repeatable; default: all).")
    ] = None,
    recording: Annotated[
        list[str] | None,
        typer.Option(help="Only this recording, e.g. 2023-01-17@00-33-01 (repeatable)."),
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option(help="Render the recordings named in an official list (trumans_test.txt)."),
    ] = None,
    body: Annotated[
        str,
        typer.Option(help="blend: the CC4 avatar of the .blend (official); smplx: fitted SMPL-X."),
    ] = "blend",
    clips: Annotated[
        str,
        typer.Option(help="all: every window (official); interaction: windows where objects move."),
    ] = "all",
    smplx_model: Annotated[
        Path | None,
        typer.Option(help="SMPLX_*.npz or a folder with smplx/SMPLX_*.npz (for --body smplx)."),
    ] = None,
    smplx_gender: Annotated[
        str, typer.Option(help="Model gender when the fits leave it empty (they do).")
    ] = "male",
    hand_ids: Annotated[
        Path | None,
        typer.Option(help="MANO_SMPLX_vertex_ids.pkl (default: hand vertices from skinning)."),
    ] = None,
) -> dict[str, Any]:
    """Render TRUMANS recordings into (interaction, static, hand) triplets from a camera on the
    actor's head, with the official schedule (every 3rd frame, 49-frame clips every 25).

    Recipe knobs: trumans.frame_skip, trumans.clip_stride, trumans.fov, trumans.samples,
    trumans.denoise, trumans.threads (e.g. --set trumans.samples=16).
    """
    options = {
        "root": str(root.resolve()),
        "scenes": scene or [],
        "recordings": recording or [],
        "split": str(split.resolve()) if split else None,
        "body": body,
        "clips": clips,
        "smplx_model": str(smplx_model.resolve()) if smplx_model else None,
        "smplx_gender": smplx_gender,
        "hand_ids": str(hand_ids.resolve()) if hand_ids else None,
    }
    return options
