"""Every source and every consumer of samples, declared once.

A source entry names its builder, its options model, its recipe section and its demo stage;
the CLI commands and their `--help`, the recipe validation, the builder lookup and the demo are
all made from this table. Entries are "module:attribute" strings, imported only when needed, so
reading the table costs nothing (`dwm-data --help` lists the sources from it alone). Options
and section models live in light modules (pydantic only) so that a command's `--help` and the
recipe check import no source's heavy dependencies.

Adding a source: a sub-package with its builder, its options module and (optionally) a demo
stage, plus one `Source` entry here. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    name: str  # the command, and the builder name written to plan.json
    help: str  # the command's help; its first paragraph is its line in `dwm-data --help`
    builder: str  # the Builder subclass
    options: str  # its BuilderOptions model (light module): the command's arguments and options
    section: str | None = None  # the recipe section holding its knobs
    knobs: str | None = None  # that section's model (light module)
    demo: str | None = None  # (workdir, recipe name) -> options: an input the demo makes itself
    # (builder) -> Step or None: the source's work done inside other builders when their recipe
    # turns it on (dwm_data.builder.Step)
    step: str | None = None


@dataclass(frozen=True)
class Consumer:
    """Something that reads shards (the trainer): its recipe sections and its demo step."""

    name: str
    sections: dict[str, str] = field(default_factory=dict)  # section -> model
    demo: str | None = None  # (shard folders, workdir, recipe name) -> [(figure, value)]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "import-dwm",
            """Import triplets in the official DWM layout into shards.

            The layout is <root>/<scene>/<rec>/{videos,videos_static,videos_hands,prompts_rewrite}/<stem>.*,
            or a split list of .../videos/<stem>.mp4 paths. Videos that already match the recipe
            are stored byte for byte; others are resampled and fitted.""",
            builder="dwm_data.dwm_layout.importer:ImportBuilder",
            options="dwm_data.dwm_layout.options:ImportOptions",
            demo="dwm_data.fixtures.dwm_layout:demo_stage",
        ),
        Source(
            "render-trumans",
            """Render TRUMANS recordings in Blender into triplets, from a camera on the actor's head.

            The official schedule: every 3rd frame, 49-frame clips every 25, 90 degree FOV.
            Recipe knobs: trumans.frame_skip, trumans.clip_stride, trumans.fov, trumans.samples,
            trumans.denoise, trumans.threads (e.g. --set trumans.samples=16).""",
            builder="dwm_data.trumans.builder:TrumansBuilder",
            options="dwm_data.trumans.options:TrumansOptions",
            section="trumans",
            knobs="dwm_data.trumans.options:TrumansRecipe",
            demo="dwm_data.fixtures.trumans:demo_stage",
        ),
        Source(
            "build-taste",
            """Turn real fixed-camera clips (TASTE-Rob or a folder) into triplets.

            The clip (8 fps, first 49 frames, letterboxed to 720x480 by default), frame 0 as the
            static scene, and the hands estimated and rendered on black. Too-short or broken
            clips are recorded failures. Recipe knobs: taste.hfov_deg, taste.detect_height,
            taste.max_gap.""",
            builder="dwm_data.taste.builder:TasteBuilder",
            options="dwm_data.taste.options:TasteOptions",
            section="taste",
            knobs="dwm_data.taste.options:TasteSection",
            demo="dwm_data.fixtures.taste:demo_stage",
        ),
        Source(
            "aria-capture",
            """Turn Aria captures (VRS + MPS) into triplets through a Gaussian splat of the scene.

            The splat trains on the frames before the action and renders along the interaction
            cameras as the static video; hands come from MPS hand tracking. The trained splats
            are kept as OUT/splats/<capture>.ply. Recipe knobs: the aria section (aria.splat.steps,
            aria.train_frames, ...).""",
            builder="dwm_data.aria.builder:AriaBuilder",
            options="dwm_data.aria.options:AriaOptions",
            section="aria",
            knobs="dwm_data.aria.options:AriaSettings",
            demo="dwm_data.fixtures.aria:demo_stage",
        ),
        Source(
            "build-ego",
            """Turn any egocentric video into triplets, with cameras from the video itself.

            A folder or list of videos (any fps and size): the recipe's frames where hands act,
            the cameras by structure from motion on the clip's frames (pycolmap, CPU; hands and
            arms masked; or your own with --poses), a Gaussian splat of the scene fitted to the
            same frames rendered along those cameras as the static video, and the hands in the
            recovered camera. Recipe knobs: the ego section (ego.sfm.*, ego.splat.steps,
            ego.work_width, ego.lead_frames, ...).""",
            builder="dwm_data.ego.builder:EgoBuilder",
            options="dwm_data.ego.options:EgoOptions",
            section="ego",
            knobs="dwm_data.ego.options:EgoSection",
            demo="dwm_data.fixtures.ego:demo_stage",
        ),
        Source(
            "caption",
            """Write the prompts of shards with a vision-language model, as the official data's.

            Frames sampled from the interaction video and the source's prompt as hints go through a
            local vision-language model (--vlm), then optionally a local language model rewrites
            the caption (--rewriter). The result replaces txt; the old prompt, the raw caption,
            the models and the settings go in json; the videos are kept byte for byte.
            --captioner labels keeps the source's prompts. Recipe knobs: caption.frames,
            caption.template, caption.rewrite_template, caption.batch_size, ...; any other
            builder captions its samples as it writes them with --set caption.step.vlm=DIR.""",
            builder="dwm_data.caption.builder:CaptionBuilder",
            options="dwm_data.caption.options:CaptionOptions",
            section="caption",
            knobs="dwm_data.caption.options:CaptionSection",
            demo="dwm_data.fixtures.caption:demo_stage",
            step="dwm_data.caption.step:caption_step",
        ),
    )
}

CONSUMERS: dict[str, Consumer] = {
    "train-sample": Consumer(
        "train-sample",
        sections={
            "train": "dwm_model.config:TrainConfig",
            "sample": "dwm_model.config:SampleConfig",
            "eval": "dwm_model.config:EvalConfig",
        },
        demo="dwm_model.demo:train_and_sample",
    ),
}


def sections() -> dict[str, str]:
    """Recipe section -> the model of its owner (a source or a consumer)."""
    owned = {s.section: s.knobs for s in SOURCES.values() if s.section and s.knobs}
    for consumer in CONSUMERS.values():
        owned |= consumer.sections
    return owned


def load(target: str) -> Any:
    """The object a "module:attribute" entry names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
