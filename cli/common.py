"""What every command shares: recipe options, running a builder, the end-of-run summary.

Only the standard library and Typer are imported at the top, so `dwm-data --help` stays instant.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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
    typer.Option("--workers", "-w", help="Worker processes (default: recipe run.workers)."),
]
TasksOpt = Annotated[
    int | None,
    typer.Option(
        "--tasks",
        help="Split the work into this many tasks (frozen in plan.json on the first run).",
    ),
]
ExecutorOpt = Annotated[
    str | None, typer.Option("--executor", help="local (process pool, default), ray or slurm.")
]
RetryOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Try the units recorded as failed again.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Delete OUT first instead of resuming it.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


OutArg = Annotated[Path, typer.Argument(help="Run folder to write (resumed if it exists).")]


def _run_options(
    out: OutArg,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
    workers: WorkersOpt = None,
    tasks: TasksOpt = None,
    executor: ExecutorOpt = None,
    retry_failed: RetryOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The parameters every builder command shares (a template read by `builder_command`)."""


def builder_command(builder: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Make a function that maps a source's CLI options to builder options into a full command.

    The function declares only its own arguments and options and returns the options dict; the
    command gets OUT after its arguments, the shared run options after its own, and the run.
    """

    def wrap(fn: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        own = inspect.signature(fn).parameters
        shared = inspect.signature(_run_options).parameters
        hints = typing.get_type_hints(fn, include_extras=True) | typing.get_type_hints(
            _run_options, include_extras=True
        )
        takes_out = "out" in own  # a source that keeps files of its own in OUT declares it
        arguments = [p for p in own.values() if p.default is inspect.Parameter.empty]
        options = [p for p in own.values() if p.default is not inspect.Parameter.empty]
        out = [] if takes_out else [shared["out"]]
        rest = [p for name, p in shared.items() if name != "out"]
        parameters = [
            p.replace(annotation=hints[p.name]) for p in (*arguments, *out, *options, *rest)
        ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            run = {name: kwargs.pop(name) for name in shared if name != "out"}
            out_dir = kwargs["out"] if takes_out else kwargs.pop("out")
            options = fn(**kwargs)
            run_build(builder, options, out_dir, run.pop("recipe"), run.pop("set"), **run)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return wrap


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
    quiet: bool = False,
) -> None:
    """Run a builder into OUT, print the summary, exit 1 if any unit failed (3 if unfinished)."""
    from dwm_data.build import build

    resolved = load_recipe(recipe, overrides, workers=workers, tasks=tasks, executor=executor)
    result = build(
        builder,
        options,
        resolved,
        out,
        retry_failed=retry_failed,
        overwrite=overwrite,
        progress=not quiet,
    )
    print_summary(result.status, result.seconds)
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
    if status.failures or not status.finished:
        out.print(
            "Re-run the same command to finish the rest; add --retry-failed to retry failed units."
        )
