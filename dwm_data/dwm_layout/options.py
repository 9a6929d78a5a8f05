"""`import-dwm` options (a light module: the CLI reads it for `--help`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dwm_data.options import BuilderOptions, Cli


class ImportOptions(BuilderOptions):
    source: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="A folder in the official layout, or a split list file."
    )
    data_root: Annotated[str | None, Cli(path=True)] = Field(
        None, description="What a list file's paths are relative to (default: its folder)."
    )
    license: str = Field(
        "unspecified", description="Licence of the source, recorded in every sample."
    )
    allow_missing_prompt: bool = Field(
        False, description="Import clips without a prompt as empty text."
    )
