"""Commands about runs: status, the demo, benchmarks, and the task entry used by cluster backends."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, print_summary

BENCHES = {
    "io": "dwm_data.bench.io:main",
    "hands": "dwm_data.bench.hands:main",
    "hands-real": "dwm_data.bench.hands:real",
    "trumans": "dwm_data.bench.trumans:main",
    "splat": "dwm_data.bench.splat:main",
    "ego": "dwm_data.bench.ego:main",
    "caption": "dwm_data.bench.caption:main",
    "train": "dwm_model.bench:main",
}


def status(
    out: Annotated[Path, typer.Argument(help="A run folder.")],
) -> None:
    """Progress, running units and failures of a run, read from its files alone."""
    from dwm_data.executors.slurm import job_summaries, queued_jobs
    from dwm_data.runs.folder import RunFolder
    from dwm_data.runs.status import run_status

    state = run_status(out)
    print_summary(state)
    folder = RunFolder(out)
    for line in job_summaries(folder):
        console().print(line)
    now = time.time()
    for item in state.running:
        console().print(
            f"[yellow]running[/yellow] task {item['task']}: {item['unit']} for "
            f"{now - item['since']:.0f} s (pid {item['pid']} on {item['host']}, "
            f"heartbeat {now - item['heartbeat']:.0f} s ago)"
        )
    messages = {
        "finished": "finished",
        "running": "running",
        "stopped": "stopped (nothing is running); re-run the same command to resume",
    }
    queued = queued_jobs(folder) if state.state == "stopped" else []
    if queued:
        console().print(f"queued on Slurm (job {', '.join(queued)})")
    else:
        console().print(messages[state.state])


def run_task(
    out: Annotated[Path, typer.Argument(help="A run folder with plan.json.")],
    task: Annotated[int, typer.Option(help="Task index in the plan.")],
    retry_failed: Annotated[bool, typer.Option(help="Retry this task's failed units.")] = False,
) -> None:
    """Run one task of a frozen plan under a supervisor (what a Slurm array element calls)."""
    import signal
    import threading

    from dwm_data.executors.supervise import supervise
    from dwm_data.runs.folder import RunFolder
    from dwm_data.runs.plan import live_settings

    folder = RunFolder(out)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Slurm's preemption: close what is complete
        signal.signal(sig, lambda signum, frame: stop.set())
    config = live_settings(folder)
    if not supervise(out, task, config, retry_failed=retry_failed, stop=stop):
        raise typer.Exit(3)


def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the demo's input, shards and previews.")
    ] = Path("demo-output"),
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="Recipe for every stage.")] = "tiny",
    base: Annotated[
        str | None,
        typer.Option(
            help="The tiny base model trained at the end: cogvideox or wan (-r tiny-wan)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run every builder on input the demo makes itself (no download), then preview and summarise."""
    from dwm_data.demo import run_demo
    from dwm_data.errors import DwmDataError
    from dwm_model.bench import RECIPES

    if base is not None:
        if base not in RECIPES:
            raise DwmDataError(f"unknown base '{base}' (known: {', '.join(RECIPES)})")
        if recipe != "tiny":
            raise DwmDataError("--base picks the tiny recipe of a base; give it without --recipe")
        recipe = RECIPES[base]
    ok = run_demo(out, recipe, console(), progress=not quiet)
    if not ok:
        raise typer.Exit(1)


def bench(
    topic: Annotated[str, typer.Argument(help=f"One of: {', '.join(BENCHES)}.")],
    quick: Annotated[bool, typer.Option(help="Smaller inputs, for a fast sanity run.")] = False,
    base: Annotated[
        str | None, typer.Option(help="bench train: the tiny base model, cogvideox or wan.")
    ] = None,
) -> None:
    """Measure speed against a baseline on the same input, in one run; prints the figures."""
    import importlib

    from rich.table import Table

    from dwm_data.errors import DwmDataError
    from dwm_data.output import output_to

    if topic not in BENCHES:
        raise DwmDataError(f"unknown benchmark '{topic}' (known: {', '.join(BENCHES)})")
    if base is not None and topic != "train":
        raise DwmDataError("--base applies to bench train only")
    module, _, name = BENCHES[topic].partition(":")
    options = {"quick": quick} | ({"base": base} if base else {})
    # Blender, pycolmap, TFLite and absl print from C; their lines go to a log, the table here
    log = Path(tempfile.gettempdir()) / f"dwm-bench-{topic}.log"
    console().print(f"bench {topic}: third-party output goes to {log}")
    try:
        with output_to(log):
            rows = getattr(importlib.import_module(module), name)(**options)
    except ModuleNotFoundError as exc:
        raise DwmDataError(f"benchmark '{topic}' is not available in this install ({exc})") from exc
    table = Table(
        title=f"dwm-data bench {topic}{f' --base {base}' if base else ''}{' --quick' if quick else ''}",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for figure, value in rows:
        table.add_row(figure, value)
    console().print(table)
