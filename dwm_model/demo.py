"""The demo's consumer stage: a short training of the recipe's model on the demo shards, then
one sample with its side-by-side preview (tiny recipe: seconds on a CPU)."""

from __future__ import annotations

import statistics
from pathlib import Path

DEMO_STEPS = 60


def train_and_sample(
    shard_dirs: list[Path], workdir: Path, recipe_name: str
) -> list[tuple[str, str]]:
    from dwm_data.recipe import load_recipe
    from dwm_data.store import read_samples, shard_paths
    from dwm_model.base import resolve_base
    from dwm_model.config import SampleConfig, TrainConfig
    from dwm_model.generate import WorldModel, load_inputs, preview, write_video
    from dwm_model.latents import encode_shards
    from dwm_model.train import train

    steps = [f"train.max_steps={DEMO_STEPS}", f"train.checkpoint_every={DEMO_STEPS}"]
    recipe = load_recipe(recipe_name, steps)
    video = recipe.video
    shards = shard_paths(shard_dirs)
    base = resolve_base(
        recipe.section("train", TrainConfig).base_model, video.width, video.height, video.frames
    )
    encode_shards(shards, recipe, base)
    run = train(shards, workdir / "run", recipe, resume=(workdir / "run" / "checkpoints").is_dir())
    key = next(read_samples(shards, validate=False)).key
    static, hand, prompt, truth, _ = load_inputs(shards, key, None, None, None, video)
    cfg = recipe.section("sample", SampleConfig)
    model = WorldModel.from_weights(workdir / "run")
    generated = model.generate(
        static, hand, prompt, cfg.steps, cfg.guidance, cfg.seed, sampler=cfg.sampler
    )
    target = workdir / f"{key}-preview.mp4"
    write_video(target, preview(static, hand, generated, truth), video.rate)
    losses = run.losses
    rows = [("steps", str(run.position.step)), ("sample", str(target))]
    if len(losses) >= 20:
        first, last = statistics.mean(losses[:10]), statistics.mean(losses[-10:])
        rows.insert(1, ("loss", f"{first:.3f} -> {last:.3f}"))
    return rows
