"""The `dwm-data` entry point. Commands live in small modules; each imports its work lazily."""

from __future__ import annotations

import sys

import typer

from cli import aria, dataset, runs, taste, train, trumans

app = typer.Typer(
    name="dwm-data",
    help="Build Dexterous World Model training triplets (interaction, static scene, hands) and train on them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("import-dwm", rich_help_panel="Build")(dataset.import_dwm)
app.command("render-trumans", rich_help_panel="Build")(trumans.render_trumans)
app.command("build-taste", rich_help_panel="Build")(taste.build_taste)
app.command("aria-capture", rich_help_panel="Build")(aria.aria_capture)
app.command("export-dwm", rich_help_panel="Inspect and convert")(dataset.export_dwm)
app.command("inspect", rich_help_panel="Inspect and convert")(dataset.inspect)
app.command("preview", rich_help_panel="Inspect and convert")(dataset.preview)
app.command("encode", rich_help_panel="Train")(train.encode)
app.command("train", rich_help_panel="Train")(train.train)
app.command("sample", rich_help_panel="Train")(train.sample)
app.command("eval", rich_help_panel="Train")(train.evaluate)
app.command("status", rich_help_panel="Runs")(runs.status)
app.command("run-task", rich_help_panel="Runs", hidden=True)(runs.run_task)
app.command("demo", rich_help_panel="Start here")(runs.demo)
app.command("bench", rich_help_panel="Runs")(runs.bench)


def main() -> None:
    """Run the app; user-facing errors print as one red line without a traceback (exit 2)."""
    from dwm_data.errors import DwmDataError

    try:
        app()
    except DwmDataError as exc:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
