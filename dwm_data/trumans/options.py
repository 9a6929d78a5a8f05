"""`render-trumans` options and its recipe section (a light module: the CLI reads it for `--help`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dwm_data.options import BuilderOptions, Cli

BodyKind = Literal["blend", "smplx"]
ClipPolicy = Literal["all", "interaction"]


class TrumansRecipe(BaseModel):
    """The recipe's `trumans` section; defaults are the official launcher arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_skip: int = Field(3, gt=0)
    clip_stride: int = Field(25, gt=0)
    fov: float = Field(90.0, gt=0, lt=180)  # horizontal, degrees
    samples: int = Field(64, gt=0)
    denoise: bool = True
    threads: int = Field(0, ge=0)  # Cycles CPU threads; 0 lets Blender use every core


class TrumansOptions(BuilderOptions):
    root: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="The TRUMANS release (Recordings_blend/, Actions/, smplx_result/)."
    )
    scenes: Annotated[list[str], Cli(name="scene")] = Field(
        [], description="Only this scene (repeatable; default: all)."
    )
    recordings: Annotated[list[str], Cli(name="recording")] = Field(
        [], description="Only this recording, e.g. 2023-01-17@00-33-01 (repeatable)."
    )
    split: Annotated[str | None, Cli(path=True)] = Field(
        None, description="Render the recordings named in an official list (trumans_test.txt)."
    )
    body: BodyKind = Field(
        "blend", description="blend: the CC4 avatar of the .blend (official); smplx: fitted SMPL-X."
    )
    clips: ClipPolicy = Field(
        "all", description="all: every window (official); interaction: windows where objects move."
    )
    smplx_model: Annotated[str | None, Cli(path=True)] = Field(
        None, description="SMPLX_*.npz or a folder with smplx/SMPLX_*.npz (for --body smplx)."
    )
    smplx_gender: Literal["male", "female", "neutral"] = Field(
        "male", description="Model gender when the fits leave it empty (the release does)."
    )
    hand_ids: Annotated[str | None, Cli(path=True)] = Field(
        None, description="MANO_SMPLX_vertex_ids.pkl (default: hand vertices from skinning)."
    )
