"""`dwm-data demo`: every builder on input the demo makes itself, then previews and a summary.

The stages are the sources of `dwm_data.registry` that name a demo function
`(workdir, recipe_name) -> options`, which writes a small input of its own under `workdir` (no
download); then each consumer's demo function `(shard folders, workdir, recipe_name) -> list of
(figure, value)` runs on the shards, for the summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dwm_data.output import output_to
from dwm_data.registry import CONSUMERS, SOURCES, load


def run_demo(out: Path, recipe_name: str, console: Any, progress: bool = True) -> bool:
    """Run each stage into out/<stage>/ (resumable), preview it, print one summary table."""
    from rich.table import Table

    from dwm_data.build import build
    from dwm_data.preview import write_preview
    from dwm_data.recipe import load_recipe

    recipe = load_recipe(recipe_name)
    table = Table(title=f"dwm-data demo ({recipe_name} recipe) -> {out}", title_justify="left")
    for column in ("stage", "samples", "failed", "seconds", "preview"):
        table.add_column(column)
    ok = True
    shard_dirs = []
    for stage, source in SOURCES.items():
        if source.demo is None:
            continue
        console.rule(stage)
        started = time.time()
        stage_dir = out / stage
        try:
            with output_to(stage_dir / "input.log"):  # e.g. Blender saving the mini release
                options = load(source.demo)(stage_dir / "input", recipe_name)
            result = build(stage, options, recipe, stage_dir / "run", progress=progress)
        except Exception as exc:  # one stage's missing extra must not hide the others
            console.print(
                f"[red]{stage} failed:[/red] {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
            table.add_row(stage, "-", "error", f"{time.time() - started:.1f}", "-")
            ok = False
            continue
        preview = stage_dir / "preview.png"
        if result.status.samples:
            write_preview(stage_dir / "run", preview, count=2)
            write_preview(stage_dir / "run", preview.with_suffix(".mp4"), count=2)
            shard_dirs.append(stage_dir / "run")
        ok &= result.ok
        table.add_row(
            stage,
            str(result.status.samples),
            str(result.status.failed),
            f"{time.time() - started:.1f}",
            str(preview.relative_to(out)) if result.status.samples else "-",
        )
    results = []
    for name, consumer in CONSUMERS.items():
        if consumer.demo is None:
            continue
        console.rule(name)
        started = time.time()
        try:
            # its progress bar stays on stdout; library warnings (diffusers) go to its log
            with output_to(out / name / "log.txt", fds=(2,)):
                rows = load(consumer.demo)(shard_dirs, out / name, recipe_name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            console.print(f"[red]{name} failed:[/red] {first}")
            ok = False
            continue
        results.append((name, time.time() - started, rows))
    console.print(table)
    for name, seconds, rows in results:
        console.print(
            f"[bold]{name}[/bold] ({seconds:.1f} s): " + "; ".join(f"{k}: {v}" for k, v in rows)
        )
    console.print(
        "Look at the previews (static | hand | interaction | overlay); inspect shards with `dwm-data inspect`."
    )
    return ok
