"""`dwm-data simulate`: a user's scene, a camera path and a hand motion to the interaction video.

The condition videos come from `dwm_data.simulate` (the builders' renderers); the model samples
through `WorldModel.generate`, the code path of `dwm-data sample` (and so through the backbone
seam, CogVideoX or Wan). Everything that went in is recorded in the result's `simulate.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.recipe import Recipe
from dwm_data.simulate.conditions import Conditions
from dwm_data.simulate.motion import Placement
from dwm_model.config import SampleConfig


@dataclass(frozen=True)
class SceneSpec:
    """The scene and the path through it."""

    scene: Path
    path: Path
    up: str | None = None  # None: the format's own (scene.DEFAULT_UP)
    scale: float = 1.0
    fov: float | None = None
    path_fps: Fraction | None = None
    samples: int = 64  # Cycles samples for a .blend


@dataclass(frozen=True)
class MotionSpec:
    """The hands: a motion file, a sample's hands, or none (navigation only)."""

    hands: Path | None = None
    shards: tuple[Path, ...] = ()
    key: str | None = None
    placement: Placement = "ego"
    mano_dir: Path | None = None
    motion_fps: Fraction | None = None
    motion_poses: Path | None = None

    @property
    def none(self) -> bool:
        return self.hands is None and self.key is None

    def label(self) -> str:
        return self.hands.stem if self.hands is not None else str(self.key or "no-hand")


class Simulator:
    """A scene and path loaded and rendered once; hands and samples per motion (ranking
    renders many motions along one path)."""

    def __init__(self, spec: SceneSpec, recipe: Recipe):
        from dwm_data.simulate.conditions import static_video
        from dwm_data.simulate.paths import load_path
        from dwm_data.simulate.scene import DEFAULT_UP, load_scene

        video = recipe.video
        video.check()
        self.recipe = recipe
        self.scene = load_scene(spec.scene, spec.samples)
        self.path = load_path(
            spec.path, video.frames, video.rate, video.width, video.height, spec.fov, spec.path_fps
        )
        self.up = spec.up or DEFAULT_UP[spec.scene.suffix.lower()]
        self.static = static_video(self.scene, self.path, self.up, spec.scale)
        self.record = {
            "scene": {**self.scene.describe(), "up": self.up, "scale": spec.scale},
            "path": self.path.record,
        }

    def conditions(self, motion: MotionSpec) -> Conditions:
        from dwm_data.simulate.conditions import hand_video
        from dwm_data.simulate.motion import motion_from_sample, place_motion, read_motion

        placed = None
        if not motion.none:
            if motion.key is not None:
                raw = motion_from_sample(list(motion.shards), motion.key)
            else:
                raw = read_motion(motion.hands)
            poses = None
            if motion.motion_poses is not None:
                from dwm_data.simulate.paths import read_poses

                poses = read_poses(motion.motion_poses)
            placed = place_motion(
                raw,
                self.path,
                self.recipe.video.rate,
                motion.placement,
                motion.mano_dir,
                motion.motion_fps,
                poses,
            )
        hand = hand_video(placed, self.path)
        hands = placed.record if placed is not None else {"navigation_only": True}
        return Conditions(self.static, hand, self.path, placed, {**self.record, "hands": hands})


def sample_prompt(motion: MotionSpec, prompt: str | None) -> str:
    """--prompt, else a sample's own prompt when the hands come from one, else empty."""
    if prompt is not None or motion.key is None:
        return prompt or ""
    from dwm_data.store import read_samples

    found = next(
        (s for s in read_samples(list(motion.shards), validate=False) if s.key == motion.key), None
    )
    return found.prompt if found is not None else ""


def generate(model, conditions: Conditions, prompt: str, settings: SampleConfig) -> np.ndarray:
    """The interaction video, as `dwm-data sample` makes it (the hand condition always given:
    navigation only is its all-black video)."""
    return model.generate(
        conditions.static,
        conditions.hand,
        prompt,
        steps=settings.steps,
        guidance=settings.guidance,
        seed=settings.seed,
        sampler=settings.sampler,
    )


def simulate(
    model,
    scene: SceneSpec,
    motion: MotionSpec,
    out: Path,
    recipe: Recipe,
    settings: SampleConfig,
    prompt: str | None = None,
    overwrite: bool = False,
    inputs: dict[str, Any] | None = None,
) -> list[str]:
    """Render the conditions, sample (unless `model` is None: condition videos only) and write
    the result folder; returns its files."""
    from dwm_data.simulate.conditions import check_result_folder, write_result

    check_result_folder(out, overwrite)
    conditions = Simulator(scene, recipe).conditions(motion)
    text = sample_prompt(motion, prompt)
    videos = {"static": conditions.static, "hand": conditions.hand}
    if model is not None:
        videos["video"] = generate(model, conditions, text, settings)
    record = result_record(conditions, recipe, settings if model is not None else None, inputs)
    codecs = recipe.codecs.to_codecs()
    return write_result(out, videos, conditions, text, record, recipe.video.rate, codecs, overwrite)


def result_record(
    conditions: Conditions,
    recipe: Recipe,
    settings: SampleConfig | None,
    inputs: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "inputs": inputs or {},
        **conditions.record,
        "recipe": recipe.dump(),
        "sampled": settings is not None,
        "sample": None if settings is None else settings.model_dump(),
    }


def spec_record(*specs: Any) -> dict[str, Any]:
    """Dataclass specs as JSON-ready dicts (paths and fractions as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value.expanduser().resolve())
        if isinstance(value, Fraction):
            return str(value)
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {type(s).__name__: {k: plain(v) for k, v in asdict(s).items()} for s in specs}
