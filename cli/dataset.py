"""Commands that bring data in and out and let a person look at it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console


def export_dwm(
    shards: Annotated[
        Path, typer.Argument(help="A run folder, a folder of .tar shards, or one shard.")
    ],
    out: Annotated[Path, typer.Argument(help="Folder to write the official layout into.")],
    split: Annotated[
        str, typer.Option(help="Split list name for built samples: <source>_<split>.txt.")
    ] = "train",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier export in OUT.")
    ] = False,
) -> None:
    """Write shards back to the official DWM folder layout and split lists, for the official trainer."""
    from dwm_data.dwm_layout.exporter import export_dwm as export

    count = export(shards, out, split, overwrite)
    console().print(f"exported {count} samples to {out}")


def inspect(
    shards: Annotated[
        Path, typer.Argument(help="A run folder, a folder of .tar shards, or one shard.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Summarise shards: samples, sources, frames/size/fps, prompts, failures, disk size."""
    import json

    from dwm_data.inspect import inspect_shards, render_report

    report = inspect_shards(shards)
    if as_json:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        render_report(report, console())


def preview(
    shards: Annotated[
        Path, typer.Argument(help="A run folder, a folder of .tar shards, or one shard.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="A .mp4 (side-by-side video) or .png (contact sheet)."),
    ],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", "-k", help="Sample key(s) to show (default: the first ones)."),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="How many samples when no key is given.")] = 3,
    overlay: Annotated[
        bool, typer.Option(help="Add a panel with the hand video laid over the interaction.")
    ] = True,
) -> None:
    """Show static | hand | interaction side by side, to check alignment by eye."""
    from dwm_data.preview import write_preview

    shown = write_preview(shards, out, keys=key or None, count=count, overlay=overlay)
    console().print(f"wrote {out} ({', '.join(shown)})")
