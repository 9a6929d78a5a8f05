"""The `dwm-data` entry point. Commands live in small modules; each imports its work lazily.
The builders' commands are made from `dwm_data.registry` (`cli.generate`)."""

from __future__ import annotations

import sys

import typer

from cli import dataset, runs, simulate, train
from cli.generate import Commands

app = typer.Typer(
    name="dwm-data",
    help="Build Dexterous World Model training triplets (interaction, static scene, hands) and train on them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Commands,
)

app.command("export-dwm", rich_help_panel="Inspect and convert")(dataset.export_dwm)
app.command("inspect", rich_help_panel="Inspect and convert")(dataset.inspect)
app.command("preview", rich_help_panel="Inspect and convert")(dataset.preview)
app.command("encode", rich_help_panel="Train")(train.encode)
app.command("train", rich_help_panel="Train")(train.train)
app.command("sample", rich_help_panel="Train")(train.sample)
app.command("eval", rich_help_panel="Train")(train.evaluate)
app.command("simulate", rich_help_panel="Simulate")(simulate.simulate)
app.command("rank", rich_help_panel="Simulate")(simulate.rank)
app.command("status", rich_help_panel="Runs")(runs.status)
app.command("run-task", rich_help_panel="Runs", hidden=True)(runs.run_task)
app.command("demo", rich_help_panel="Start here")(runs.demo)
app.command("bench", rich_help_panel="Runs")(runs.bench)


def main() -> None:
    """Run the app. A usage error (a bad value, a missing argument) or a user-facing error prints
    as one red line without a traceback and exits 2; other exit codes are the commands' own."""
    from dwm_data.errors import DwmDataError

    try:
        code = app(args=sys.argv[1:] or ["--help"], standalone_mode=False)
    except typer.TyperException as exc:  # the usage errors of the click inside Typer
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except DwmDataError as exc:
        _fail(str(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
