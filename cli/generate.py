"""A source's command, made from its entry in `dwm_data.registry` and its options model.

Typer reads a command's parameters from a function signature, so the signature is built from
the model's fields: positional arguments (`Cli(argument=True)`), OUT, then one option per field
(help from its description, choices from `Literal`, bounds from `gt`/`ge`/`lt`/`le`, paths from
`Cli(path=True)`), then the run options every builder shares (`cli.common.run_options`). The
commands are made only when run (`LazySourceCommand`), so `dwm-data --help` imports no model.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from cli.common import OutArg, run_build, run_options
from dwm_data.registry import SOURCES, Source

if TYPE_CHECKING:  # pydantic is imported when a source's command is made, not for `--help`
    from pydantic.fields import FieldInfo

    from dwm_data.options import Cli

BUILD_PANEL = "Build"


class Commands(TyperGroup):
    """The app's commands, with one per registered source first (the Build panel)."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        lazy = {name: LazySourceCommand(source) for name, source in SOURCES.items()}
        self.commands = {**lazy, **self.commands}


class LazySourceCommand(TyperCommand):
    """A source's line in `dwm-data --help`; parsing its arguments makes the real command."""

    def __init__(self, source: Source):
        super().__init__(source.name, help=_help(source), rich_help_panel=BUILD_PANEL)
        self.source = source

    def make_context(self, info_name, args, parent=None, **extra) -> typer.Context:
        return source_command(self.source).make_context(info_name, args, parent=parent, **extra)


def source_command(source: Source) -> TyperCommand:
    """The full command of one source: its arguments, OUT, its options, the run options."""
    from dwm_data.options import Cli
    from dwm_data.registry import load

    model = load(source.options)
    traits = {name: _traits(field, Cli) for name, field in model.model_fields.items()}
    own = [
        _parameter(name, field, traits[name])
        for name, field in model.model_fields.items()
        if traits[name].out is None
    ]
    shared = inspect.signature(run_options).parameters
    hints = typing.get_type_hints(run_options, include_extras=True)
    arguments = [p for p in own if p.default is inspect.Parameter.empty]
    options = [p for p in own if p.default is not inspect.Parameter.empty]
    rest = [shared[name].replace(annotation=hints[name]) for name in shared if name != "out"]
    out = inspect.Parameter("out", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=OutArg)
    parameters = [*arguments, out, *options, *rest]

    def command(**kwargs: Any) -> None:
        run = {name: kwargs.pop(name) for name in shared if name != "out"}
        out_dir: Path = kwargs.pop("out")
        values = {
            name: _value(kwargs.get(name), field, traits[name], out_dir)
            for name, field in model.model_fields.items()
            if name in kwargs or traits[name].out
        }
        run_build(source.name, values, out_dir, run.pop("recipe"), run.pop("set"), **run)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    app = typer.Typer(add_completion=False, rich_markup_mode="rich", pretty_exceptions_enable=False)
    app.command(source.name, help=_help(source), rich_help_panel=BUILD_PANEL)(command)
    return typer.main.get_command(app)


def _help(source: Source) -> str:
    """The registry's help as paragraphs of one line each (rich help keeps single newlines)."""
    paragraphs = inspect.cleandoc(source.help).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _traits(field: FieldInfo, cli: type[Cli]) -> Cli:
    return next((m for m in field.metadata if isinstance(m, cli)), cli())


def _parameter(name: str, field: FieldInfo, traits: Cli) -> inspect.Parameter:
    """One field as a Typer parameter: its type, where it goes, its help, choices and bounds."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    annotation = field.annotation
    if traits.path:
        annotation = Path | None if _optional(annotation) else Path
    if traits.argument:
        info = typer.Argument(help=field.description, show_default=False)
        return inspect.Parameter(name, kind, annotation=Annotated[annotation, info])
    flag = (traits.name or name).replace("_", "-")
    default = field.get_default()
    declaration = [f"--{flag}"]
    extra: dict[str, Any] = {}
    if annotation is bool:
        declaration = [f"--{flag}/--no-{flag}" if default else f"--{flag}"]
        extra["metavar"] = ""  # a flag takes no value; say none
    extra |= _bounds(field)
    if typing.get_origin(annotation) is list:
        default = None  # Typer's "not given" for a repeatable option
        annotation = annotation | None
    info = typer.Option(*declaration, help=field.description, **extra)
    required = field.is_required()
    return inspect.Parameter(
        name,
        kind,
        default=inspect.Parameter.empty if required else default,
        annotation=Annotated[annotation, info],
    )


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _bounds(field: FieldInfo) -> dict[str, Any]:
    """`gt`/`ge`/`lt`/`le` constraints as Typer's `min`/`max`, so a bad count is a usage error.

    Typer's bounds are closed: an open bound of an integer moves by one; of a float it stays,
    and the options model itself refuses the bound value (one line, exit 2)."""
    limits = {
        key: getattr(m, key)
        for m in field.metadata
        for key in ("gt", "ge", "lt", "le")
        if getattr(m, key, None) is not None
    }
    step = 1 if field.annotation is int else 0
    bounds = {}
    if "ge" in limits or "gt" in limits:
        bounds["min"] = limits["ge"] if "ge" in limits else limits["gt"] + step
    if "le" in limits or "lt" in limits:
        bounds["max"] = limits["le"] if "le" in limits else limits["lt"] - step
    return bounds


def _value(value: Any, field: FieldInfo, traits: Cli, out: Path) -> Any:
    """What the options model stores: resolved paths as text, OUT/<name> for run folders."""
    if traits.out:
        return str((out / traits.out).resolve())
    if isinstance(value, Path):
        return str(value.resolve())
    if typing.get_origin(field.annotation) is list:
        return list(value or [])
    return value
