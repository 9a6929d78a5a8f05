"""What every command shares: recipe options, the run options of builders, running a builder,
the end-of-run summary.

Only the standard library and Typer are imported at the top, so `dwm-data --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

RecipeOpt = Annotated[
    str,
    typer.Option(
        "--recipe", "-r", help="Preset name in recipes/ (dwm, tiny, ...) or a .yaml path."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a recipe key, e.g. --set video.frames=17 (repeatable)."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-w", min=1, help="Worker processes (default: recipe run.workers)."),
]
TasksOpt = Annotated[
    int | None,
    typer.Option(
        "--tasks",
        min=1,
        help="Split the work into this many tasks (frozen in plan.json on the first run).",
    ),
]
ExecutorOpt = Annotated[
    Literal["local", "ray", "slurm"] | None,
    typer.Option("--executor", help="local (process pool, default), ray or slurm."),
]
# metavar "": a flag takes no value, so its help shows none
RetryOpt = Annotated[
    bool,
    typer.Option("--retry-failed", metavar="", help="Try the units recorded as failed again."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", metavar="", help="Delete OUT first instead of resuming it.")
]
DetachOpt = Annotated[
    bool,
    typer.Option(
        "--detach",
        metavar="",
        help="Slurm: submit and return; the same command later attaches to the queued job.",
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", metavar="", help="No progress bar."),
]


OutArg = Annotated[Path, typer.Argument(help="Run folder to write (resumed if it exists).")]


def run_options(
    out: OutArg,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
    workers: WorkersOpt = None,
    tasks: TasksOpt = None,
    executor: ExecutorOpt = None,
    retry_failed: RetryOpt = False,
    overwrite: OverwriteOpt = False,
    detach: DetachOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The parameters every builder command shares (a template read by `cli.generate`)."""


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def load_recipe(recipe: str, overrides: list[str] | None, **run: Any):
    """The recipe with --set overrides, plus run options given as flags (flags win)."""
    from dwm_data.recipe import load_recipe as load

    extra = [f"run.{key}={value}" for key, value in run.items() if value is not None]
    return load(recipe, [*(overrides or []), *extra])


def run_build(
    builder: str,
    options: dict[str, Any],
    out: Path,
    recipe: str,
    overrides: list[str] | None,
    *,
    workers: int | None = None,
    tasks: int | None = None,
    executor: str | None = None,
    retry_failed: bool = False,
    overwrite: bool = False,
    detach: bool = False,
    quiet: bool = False,
) -> None:
    """Run a builder into OUT, print the summary, exit 1 if any unit failed (3 if unfinished)."""
    from dwm_data.build import build

    resolved = load_recipe(
        recipe, overrides, workers=workers, tasks=tasks, executor=executor, detach=detach or None
    )
    try:
        result = build(
            builder,
            options,
            resolved,
            out,
            retry_failed=retry_failed,
            overwrite=overwrite,
            progress=not quiet,
        )
    except KeyboardInterrupt:  # Ctrl-C while planning, before any unit ran
        console().print(
            "[yellow]stopped[/yellow] before any unit ran; re-run the same command to start"
        )
        raise typer.Exit(3) from None
    print_summary(result.status, result.seconds)
    if resolved.run.detach and not result.status.finished:
        console().print(
            f"submitted to Slurm; follow it with `dwm-data status {out}`, or re-run the same "
            "command (without --detach) to wait for it and write dataset.json"
        )
        return
    if result.stopped:
        console().print(
            f"[yellow]stopped[/yellow]: {result.status.done} units kept in closed shards, "
            f"{result.status.pending} pending; re-run the same command to resume"
        )
    if not result.status.finished:
        raise typer.Exit(3)
    if result.status.failed:
        raise typer.Exit(1)


def print_summary(status, seconds: float | None = None) -> None:
    from collections import Counter

    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(
        title=f"{status.builder} -> {status.root}", show_header=False, title_justify="left"
    )
    table.add_row(
        "units",
        f"{status.done} done, {status.failed} failed, {status.pending} pending of {status.units}",
    )
    table.add_row(
        "samples", f"{status.samples} in {status.shards} shards, {status.bytes / 1e6:.1f} MB"
    )
    table.add_row("tasks", f"{status.tasks_complete} of {status.tasks} complete")
    if seconds is not None:
        table.add_row("time", f"{seconds:.1f} s")
    if status.failures:
        by_stage = Counter(f["stage"] for f in status.failures)
        table.add_row("failures", ", ".join(f"{stage}: {n}" for stage, n in by_stage.most_common()))
    out.print(table)
    for failure in status.failures[:10]:
        line = escape(f"{failure['unit']} [{failure['stage']}] {failure['message']}")
        out.print(f"[red]failed[/red] {line}")
    if len(status.failures) > 10:
        out.print(f"... and {len(status.failures) - 10} more (see {status.root}/failures/)")
    if status.pending:
        out.print(f"Re-run the same command to finish the {status.pending} pending units.")
    if status.failures:
        out.print("Add --retry-failed to the same command to try the failed units again.")
