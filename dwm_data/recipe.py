"""Recipes: YAML presets loaded into typed configs, overridable from the command line.

A recipe pins every knob of a run. The shared sections (video, codecs, shards, run) are typed
here; the other sections belong to a source or to the trainer, which type them with their own
model (`recipe.section(name, Model)`), so the sources stay independent. Loading a recipe checks
every section against its owner's model, named in `dwm_data.registry`, so a typo fails the
command before anything runs. `base:` lets a recipe start from another one and change a few keys.
The presets ship inside the package (`recipes/`), so an installed wheel finds them too.
"""

from __future__ import annotations

from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dwm_data import registry
from dwm_data.errors import DwmDataError
from dwm_data.video import Codec

RECIPES_DIR = Path(str(resources.files("recipes")))

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VideoConfig(Strict):
    frames: int = Field(49, gt=0)
    width: int = Field(720, gt=0)
    height: int = Field(480, gt=0)
    fps: str = "8"
    resize: Literal["letterbox", "crop"] = "letterbox"
    # The transformer needs sizes in multiples of 16 and 4k+1 frames; the video codec only even sizes.
    size_multiple: int = Field(16, gt=0)

    @field_validator("fps", mode="before")
    @classmethod
    def _fps(cls, value: Any) -> str:
        return str(Fraction(str(value)))

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps)

    def check(self) -> None:
        if self.width % self.size_multiple or self.height % self.size_multiple:
            raise DwmDataError(
                f"recipe size {self.width}x{self.height} is not a multiple of {self.size_multiple}"
            )


Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
OfficialSource = Literal["trumans", "taste", "aria"]  # the sources with official data to match


class CodecConfig(Strict):
    codec: str = "libx264"
    crf: int = Field(18, ge=0, le=63)
    preset: Preset = "medium"
    pix_fmt: Literal["yuv420p", "yuv422p", "yuv444p"] = "yuv420p"
    gop: int | None = Field(None, gt=0)  # frames between keyframes; unset: x264's own
    bframes: int | None = Field(None, ge=0, le=16)  # unset: the preset's

    def to_codec(self) -> Codec:
        return Codec(self.codec, self.crf, self.preset, self.pix_fmt, self.gop, self.bframes)


class SourceCodecs(Strict):
    """How one source's official data was encoded, over the shared settings."""

    video: CodecConfig = CodecConfig()
    static: CodecConfig = CodecConfig()
    hand: CodecConfig = CodecConfig()


class CodecsConfig(Strict):
    """`video`/`static`/`hand`: the settings every source starts from (imports that need
    re-encoding, benchmarks); `trumans`/`taste`/`aria`: what each source's official data differs
    in (dwm-recipe.md section 14), so a built sample is encoded as the official one was."""

    video: CodecConfig = CodecConfig()
    static: CodecConfig = CodecConfig()
    hand: CodecConfig = CodecConfig(pix_fmt="yuv444p")
    trumans: SourceCodecs = SourceCodecs()
    taste: SourceCodecs = SourceCodecs()
    aria: SourceCodecs = SourceCodecs()

    @model_validator(mode="before")
    @classmethod
    def _sources_over_shared(cls, data: Any) -> Any:
        """A source's section names only what differs; the rest comes from the shared settings,
        filled in here, on load, so the recipe a run saves (and its workers read) holds them whole."""
        if not isinstance(data, dict):
            return data
        shared = {}
        for name in SourceCodecs.model_fields:
            given = data.get(name) or {}
            default = cls.model_fields[name].default.model_dump()
            shared[name] = {**default, **given} if isinstance(given, dict) else given
        filled = dict(data)
        for source in get_args(OfficialSource):
            own = data.get(source) or {}
            if isinstance(own, dict):
                filled[source] = own | {
                    name: {**base, **own.get(name, {})}
                    for name, base in shared.items()
                    if isinstance(base, dict) and isinstance(own.get(name, {}), dict)
                }
        return filled

    def to_codecs(self, source: OfficialSource | None = None) -> dict[str, Codec]:
        """Per video, the shared settings, or those of `source`'s official data."""
        configs = getattr(self, source) if source else self
        return {name: getattr(configs, name).to_codec() for name in SourceCodecs.model_fields}


class ShardConfig(Strict):
    name: str = "dwm"
    maxcount: int = Field(100, gt=0)
    maxsize: int = Field(1_000_000_000, gt=0)

    @field_validator("maxsize", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)


class SlurmConfig(Strict):
    """Array-job resources; each array element runs one task of the plan."""

    partition: str | None = None
    time: str = "24:00:00"
    cpus_per_task: int = Field(4, gt=0)
    mem: str = "16G"
    gpus: int = Field(0, ge=0)
    extra: list[str] = []  # further #SBATCH lines, e.g. ["--account=abc", "--qos=high"]
    poll_seconds: float = Field(30.0, gt=0)


class RayConfig(Strict):
    address: str | None = None  # an existing cluster ("auto" or ray://...); None: a local one
    cpus_per_task: float = Field(1.0, ge=0)
    gpus_per_task: float = Field(0.0, ge=0)
    memory_per_task: str | None = None  # e.g. "8GB": Ray schedules by it


class RunConfig(Strict):
    executor: Literal["local", "ray", "slurm"] = "local"
    workers: int = Field(2, gt=0)
    # None: enough tasks to keep every worker busy and balance the load
    tasks: int | None = Field(None, gt=0)
    unit_timeout: float = Field(3600.0, gt=0)
    # a worker process is replaced after this many units (leaks)
    units_per_process: int = Field(25, gt=0)
    # how often a crashed or killed task is restarted before giving up
    restarts: int = Field(3, ge=0)
    # slurm only: submit the arrays and return; re-running the command attaches to them
    detach: bool = False
    slurm: SlurmConfig = SlurmConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _detach_on_slurm(self) -> RunConfig:
        if self.detach and self.executor != "slurm":
            raise ValueError("detach needs the slurm executor (--executor slurm)")
        return self


class Recipe(BaseModel):
    """The resolved recipe; the sections of sources and the trainer are kept raw (checked on
    load) and typed by their owners."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = "custom"
    video: VideoConfig = VideoConfig()
    codecs: CodecsConfig = CodecsConfig()
    shards: ShardConfig = ShardConfig()
    run: RunConfig = RunConfig()

    def section(self, name: str, model: type[M]) -> M:
        if name not in registry.sections():
            raise DwmDataError(f"unknown recipe section '{name}'")
        return model.model_validate((self.model_extra or {}).get(name, {}))

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_size(value: Any) -> int:
    """'1GB', '500MB', 3e9 or 1000 -> bytes."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().upper().removesuffix("B")
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def recipe_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = RECIPES_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise DwmDataError(f"recipe '{name_or_path}' not found (known: {known}; or pass a .yaml path)")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise DwmDataError(f"recipe base cycle: {' -> '.join(str(p) for p in (*seen, path))}")
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("base", None)
    if base is None:
        return data
    return deep_merge(_read(recipe_path(base), (*seen, path)), data)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars (`3`, `true`, `[1,2]`)."""
    data = deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise DwmDataError(f"override '{item}' must look like section.key=value")
        dotted, raw = item.split("=", 1)
        node = data
        *parents, leaf = dotted.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DwmDataError(f"override '{item}': '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_recipe(name_or_path: str | Path = "dwm", overrides: list[str] | None = None) -> Recipe:
    """Load a preset by name (recipes/<name>.yaml) or path, apply overrides, check every section."""
    data = apply_overrides(_read(recipe_path(name_or_path)), overrides or [])
    owned = registry.sections()
    allowed = [*Recipe.model_fields, *owned]
    for key in data:
        if key not in allowed:
            raise DwmDataError(
                f"recipe {name_or_path}: unknown key '{key}' (allowed: {', '.join(allowed)})"
            )
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise DwmDataError(_first_error(name_or_path, Recipe, (), exc)) from exc
    for section, target in owned.items():
        model = registry.load(target)
        try:
            model.model_validate(data.get(section) or {})
        except ValidationError as exc:
            raise DwmDataError(_first_error(name_or_path, model, (section,), exc)) from exc
    recipe.video.check()
    return recipe


def _first_error(
    name: str | Path, model: type[BaseModel], prefix: tuple[str, ...], exc: ValidationError
) -> str:
    """One line for the first problem: where, and what; for a typo, the keys allowed there."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    where = ".".join((*prefix, *loc))
    if error["type"] == "extra_forbidden":
        keys = _keys_at(model, loc[:-1])
        return f"recipe {name}: unknown key '{where}'" + (
            f" (allowed: {', '.join(keys)})" if keys else ""
        )
    return f"recipe {name}: {where}: {error['msg']}"


def _keys_at(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    """The keys of the (nested) section at `path`, e.g. ("splat",) in the aria section."""
    for part in path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
