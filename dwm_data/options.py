"""The base of every source's options, and how a field shows on the command line.

A source declares its options once, as one pydantic model in a light module (pydantic and the
standard library only): the builder validates plan.json against it, and the CLI builds the
source's command from its fields (help from `description`, choices from `Literal`, bounds from
`gt`/`ge`/`le`/`lt`), so `dwm-data <source> --help` needs neither numpy nor the source itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class BuilderOptions(BaseModel):
    """Base for a builder's own options (input paths, backends); stored in plan.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Cli:
    """Command-line traits of one options field, given as `Annotated[type, Cli(...)]`.

    Without it a field is an option named after it (`mano_dir` -> `--mano-dir`).
    """

    argument: bool = False  # positional, before OUT
    name: str | None = None  # the option's name when the field's reads badly (`backend` -> `hands`)
    path: bool = False  # a file or folder: taken as a path and stored resolved
    out: str | None = None  # not an option: the folder OUT/<out> of the run
