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
BaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base-model",
        help="Base model folder (diffusers layout); default: recipe train.base_model.",
    ),
]


def _shards(specs: list[Path]) -> list[Path]:
    from dwm_data.store import shard_paths

    return shard_paths([str(s) for s in specs])


def train(
    shards: ShardsArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder for checkpoints and weights.")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the latest checkpoint in OUT.")
    ] = False,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the base model into a Dexterous World Model (LoRA + widened patch embedding).

    Uses the latent cache next to the shards when `dwm-data encode` made one, else encodes on the fly.
    """
    from dwm_model.train import train as run

    result = run(_shards(shards), out, load_recipe(recipe, set), resume=resume, progress=not quiet)
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
    base_model: BaseOpt = None,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
) -> None:
    """Store VAE latent moments and prompt embeddings next to the shards (<dir>/latents/), once."""
    from dwm_model.base import resolve_base
    from dwm_model.config import TrainConfig
    from dwm_model.latents import encode_shards

    resolved = load_recipe(recipe, set)
    video = resolved.video
    name = str(base_model) if base_model else resolved.section("train", TrainConfig).base_model
    folder = resolve_base(name, video.width, video.height, video.frames)
    result = encode_shards(_shards(shards), resolved, folder)
    console().print(
        f"encoded {result.samples} samples of {result.shards} shards ({result.skipped} broken "
        f"skipped, {result.reused} shards already cached)"
    )


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
    base_model: BaseOpt = None,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
) -> None:
    """Generate the interaction video from a static video, a hand video and a prompt."""
    from dwm_model.config import SampleConfig
    from dwm_model.generate import WorldModel, load_inputs, preview, write_video

    resolved = load_recipe(recipe, set)
    cfg = resolved.section("sample", SampleConfig)
    static_v, hand_v, text, truth = load_inputs(
        _shards(shards) if shards else None, key, static, hand, prompt
    )
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
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for eval.json and the videos.")],
    base_model: BaseOpt = None,
    recipe: RecipeOpt = "dwm",
    set: SetOpt = None,
) -> None:
    """Sample every shard sample and score it against the recorded video (PSNR, SSIM)."""
    from dwm_model.evaluate import evaluate as run
    from dwm_model.generate import WorldModel

    summary = run(
        _shards(shards), WorldModel.from_weights(weights, base_model), load_recipe(recipe, set), out
    )
    console().print(
        f"{summary['samples']} samples ({summary['skipped']} broken skipped): PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f} "
        f"(per sample in {out / 'eval.json'})"
    )
