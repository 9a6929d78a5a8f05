"""Commands of the bundled world model: encode latents, train, sample, evaluate.

Thin: parse, load the recipe, call one function of `dwm_model`. Nothing heavy at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import QuietOpt, RecipeOpt, SetOpt, console, load_recipe

ShardsArg = Annotated[
    list[Path], typer.Argument(help="Run folders, folders of .tar shards, shards or globs.")
]
TrainBaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base-model",
        help="Base model folder as downloaded (CogVideoX-Fun-V1.1-5b-InP, or Wan2.1-Fun-InP with "
        "-r dwm-wan); default: the recipe's train.base_model, a path taken from the folder you run "
        "in (dwm recipe: models/CogVideoX-Fun-V1.1-5b-InP; tiny, tiny-wan: random CPU models).",
    ),
]
BaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base-model",
        help="Base model folder (CogVideoX-Fun or Wan2.1-Fun InP); default: the one the weights "
        "were trained on, "
        "as the run recorded it (needed for weights that record none, e.g. the official release).",
    ),
]
RunRecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        "-r",
        help="Preset name or .yaml path; default: the recipe.json the run was trained with.",
    ),
]


def _shards(specs: list[Path]) -> list[Path]:
    from dwm_data.store import shard_paths

    return shard_paths([str(s) for s in specs])


def _with_base(overrides: list[str] | None, base_model: Path | None) -> list[str]:
    """--set overrides, plus train.base_model from --base-model (made absolute, as recorded)."""
    extra = [f"train.base_model={base_model.expanduser().resolve()}"] if base_model else []
    return [*(overrides or []), *extra]


def _say(line: str) -> None:
    console().print(f"[yellow]note:[/yellow] {line}")


def _run_recipe(weights: Path, recipe: str | None, overrides: list[str] | None):
    """--recipe when given, else the recipe the run was trained with; --set on top of either."""
    from dwm_model.train import run_recipe

    return load_recipe(recipe, overrides) if recipe else run_recipe(weights, overrides)


def train(
    shards: ShardsArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder for checkpoints and weights.")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the latest checkpoint in OUT.")
    ] = False,
    base_model: TrainBaseOpt = None,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the base model into a Dexterous World Model (LoRA + widened patch embedding).

    Uses the latent cache next to the shards when `dwm-data encode` made one, else encodes on the fly. Shards of longer or larger clips than the recipe's are windowed and resized on load, as a note says before the first step.
    """
    from dwm_model.train import train as run

    resolved = load_recipe(recipe, _with_base(set, base_model))
    result = run(_shards(shards), out, resolved, resume=resume, progress=not quiet, notify=_say)
    pos = result.position
    busy = result.data_seconds + result.model_seconds
    console().print(
        f"trained to step {pos.step} on {pos.samples} samples ({pos.skipped} broken skipped), "
        f"{'cached latents' if result.cached else 'encoding on the fly'}; "
        f"last loss {result.losses[-1] if result.losses else float('nan'):.4f}; "
        f"data wait {100 * result.data_seconds / max(busy, 1e-9):.1f}% of step time; weights in {out}"
    )


def encode(
    shards: ShardsArg,
    base_model: TrainBaseOpt = None,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
) -> None:
    """Store VAE latent moments and prompt embeddings next to the shards (<dir>/latents/), once."""
    from dwm_model.base import resolve_base
    from dwm_model.config import TrainConfig
    from dwm_model.latents import encode_shards

    resolved = load_recipe(recipe, _with_base(set, base_model))
    video = resolved.video
    name = resolved.section("train", TrainConfig).base_model
    folder = resolve_base(name, video.width, video.height, video.frames)
    result = encode_shards(_shards(shards), resolved, folder)
    console().print(
        f"encoded {result.samples} samples of {result.shards} shards ({result.skipped} broken "
        f"skipped, {result.reused} shards already cached)"
    )


def _image(path: Path):
    """An image file as (H, W, 3) uint8 RGB; an unreadable one is one line."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from dwm_data.errors import DwmDataError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DwmDataError(f"{path}: not a readable image ({exc})") from exc


def sample(
    weights: Annotated[
        Path, typer.Argument(help="A training run folder or one of its checkpoints.")
    ],
    out: Annotated[
        Path, typer.Argument(help="The video to write (.mp4); a -preview.mp4 goes beside it.")
    ],
    shards: Annotated[
        list[Path] | None, typer.Option("--shards", help="Shards to take --key from.")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Sample key in --shards.")] = None,
    static: Annotated[Path | None, typer.Option("--static", help="Static-scene video.")] = None,
    hand: Annotated[Path | None, typer.Option("--hand", help="Hand video.")] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Text prompt (default: the sample's).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps (default: recipe).")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale.")] = None,
    seed: Annotated[int | None, typer.Option(help="Noise seed.")] = None,
    no_hand: Annotated[
        bool, typer.Option("--no-hand", help="Drop the hand condition (navigation only).")
    ] = False,
    no_prompt: Annotated[bool, typer.Option("--no-prompt", help="Drop the prompt.")] = False,
    clip_image: Annotated[
        Path | None,
        typer.Option(
            "--clip-image",
            help="An image (.png, .jpg) for the CLIP image condition of a base that has one "
            "(Wan InP; without it: zeroed CLIP features, as the official dwm mode).",
        ),
    ] = None,
    base_model: BaseOpt = None,
    recipe: RunRecipeOpt = None,
    set: SetOpt = None,
) -> None:
    """Generate the interaction video from a static video, a hand video and a prompt.

    Sizes, frames, fps and sampling settings come from the run's recipe.json unless -r/--set say otherwise.
    """
    from dwm_model.config import SampleConfig
    from dwm_model.generate import WorldModel, load_inputs, preview, write_video

    resolved = _run_recipe(weights, recipe, set)
    cfg = resolved.section("sample", SampleConfig)
    static_v, hand_v, text, truth, fitted = load_inputs(
        _shards(shards) if shards else None, key, static, hand, prompt, resolved.video
    )
    for note in fitted:
        console().print(f"fitted {note}", highlight=False)
    model = WorldModel.from_weights(weights, base_model)
    video = model.generate(
        static_v,
        hand_v,
        text,
        steps=steps or cfg.steps,
        guidance=cfg.guidance if guidance is None else guidance,
        seed=cfg.seed if seed is None else seed,
        use_hand=not no_hand,
        use_prompt=not no_prompt,
        sampler=cfg.sampler,
        clip_image=None if clip_image is None else _image(clip_image),
    )
    fps = resolved.video.rate
    write_video(out, video, fps)
    panels = [static_v, hand_v, video] + ([truth] if truth is not None else [])
    side = out.with_name(f"{out.stem}-preview.mp4")
    write_video(side, preview(*panels), fps)
    console().print(
        f"wrote {out} and {side} (static | hand | generated{' | recorded' if truth is not None else ''})"
    )


def evaluate(
    weights: Annotated[
        Path, typer.Argument(help="A training run folder or one of its checkpoints.")
    ],
    shards: ShardsArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for metrics.{json,csv,md} and the videos.")
    ],
    seeds: Annotated[
        int | None,
        typer.Option(help="Predictions per clip, scores averaged (default: recipe eval.seeds)."),
    ] = None,
    base_model: BaseOpt = None,
    recipe: RunRecipeOpt = None,
    set: SetOpt = None,
) -> None:
    """Generate every shard sample and score it against the recorded video.

    The official metrics (PSNR over the whole clip, SSIM, LPIPS-VGG, DreamSim) on the mp4 files as written and read back; LPIPS and DreamSim weights are local files named in the recipe's eval section (eval.lpips_backbone, eval.dreamsim_folder). Sizes and settings come from the run's recipe.json unless -r/--set say otherwise.
    """
    from rich.table import Table

    from dwm_model.evaluate import evaluate as run
    from dwm_model.evaluate import table
    from dwm_model.generate import WorldModel

    overrides = [*(set or []), *([f"eval.seeds={seeds}"] if seeds is not None else [])]
    resolved = _run_recipe(weights, recipe, overrides)
    model = WorldModel.from_weights(weights, base_model)
    summary = run(_shards(shards), model, resolved, out, notify=_say)
    header, rows = table(summary)
    shown = Table(*header)
    for row in rows:
        shown.add_row(*row)
    console().print(shown)
    console().print(
        f"{summary['samples']} samples ({summary['skipped']} broken skipped); "
        f"written to {out / 'metrics.json'}, metrics.csv and metrics.md"
    )
