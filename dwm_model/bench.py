"""Trainer throughput on the tiny model: where a step's time goes, and whether data keeps up.

One run, same shards: training on cached latents (data wait vs model time; target: data wait
under 5 % of the step), the loader alone vs the trainer's consumption (samples/s), and cached
latents vs encoding on the fly (the cache's speed-up). `base="wan"` runs the same on the tiny
Wan2.1-Fun-InP (recipe `tiny-wan`: its official LoRA targets and fully trained layer).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from dwm_data.recipe import Recipe, load_recipe


def _write_shards(folder: Path, recipe: Recipe, clips: int) -> list[Path]:
    import webdataset as wds

    from dwm_data.fixtures.dwm_layout import synthetic_triplet
    from dwm_data.sample import make_sample

    video, codecs = recipe.video, recipe.codecs.to_codecs()
    paths = [folder / f"bench-{index:06d}.tar" for index in range(2)]
    for index, path in enumerate(paths):
        with wds.TarWriter(str(path)) as writer:
            for seed in range(index, clips, 2):
                frames = synthetic_triplet(video.frames, video.width, video.height, seed=seed)
                meta = {"source": {"name": "bench", "seed": seed, "license": "CC0-1.0"}}
                sample = make_sample(
                    f"bench-{seed:04d}", frames, video.rate, codecs, "push the box", meta
                )
                writer.write(sample.to_wds())
    return paths


def _loader_rate(cache: list[Path], batch_size: int, batches: int) -> float:
    from dwm_model.data import latent_decoder, make_loader

    loader = make_loader(
        [str(p) for p in cache], latent_decoder, batch_size, train=True, batches_per_worker=batches
    )
    start = time.perf_counter()
    count = sum(len(batch["key"]) for batch in loader)
    return count / (time.perf_counter() - start)


def _steady_wait_share(run: Path) -> float:
    """Data wait over step time without step 1, which pays for opening the stream."""
    import json

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1:]
    wait = sum(r["data_s"] for r in records)
    return wait / (wait + sum(r["model_s"] for r in records))


# The tiny recipe of each base (recipes/<name>.yaml).
RECIPES = {"cogvideox": "tiny", "wan": "tiny-wan"}


def main(quick: bool = False, base: str = "cogvideox") -> list[tuple[str, str]]:
    from dwm_data.errors import DwmDataError
    from dwm_model.base import resolve_base
    from dwm_model.config import TrainConfig

    if base not in RECIPES:
        raise DwmDataError(f"unknown base '{base}' (known: {', '.join(RECIPES)})")
    tiny = RECIPES[base]
    from dwm_model.data import cache_fingerprint, cached_shards
    from dwm_model.latents import encode_shards
    from dwm_model.train import train

    steps, fly_steps, clips = (40, 4, 4) if quick else (200, 20, 8)
    work = Path(tempfile.mkdtemp(prefix="dwm-bench-train-"))
    previous = os.environ.get("DWM_MODEL_CACHE")
    os.environ["DWM_MODEL_CACHE"] = str(work / "models")
    try:
        settings = [f"train.max_steps={steps}", f"train.checkpoint_every={steps}"]
        recipe = load_recipe(tiny, settings)
        video = recipe.video
        (work / "cached").mkdir()
        shards = _write_shards(work / "cached", recipe, clips)
        model = resolve_base(
            recipe.section("train", TrainConfig).base_model, video.width, video.height, video.frames
        )
        encode_shards(shards, recipe, model)
        cached = train(shards, work / "run-cached", recipe, progress=False)
        step_cached = (cached.data_seconds + cached.model_seconds) / steps
        wait_share = cached.data_seconds / (cached.data_seconds + cached.model_seconds)
        steady = _steady_wait_share(work / "run-cached")
        worker_recipe = load_recipe(tiny, [*settings, "train.num_workers=1"])
        train(shards, work / "run-worker", worker_recipe, progress=False)
        steady_worker = _steady_wait_share(work / "run-worker")
        batch = recipe.section("train", TrainConfig).batch_size
        fingerprint = cache_fingerprint(model, video.frames, video.width, video.height, 32)
        loader_rate = _loader_rate(cached_shards(shards, fingerprint), batch, steps)
        consume_rate = cached.position.samples / cached.model_seconds
        (work / "raw").mkdir()
        for shard in shards:
            shutil.copy(shard, work / "raw" / shard.name)
        fly_recipe = load_recipe(
            tiny, [f"train.max_steps={fly_steps}", f"train.checkpoint_every={fly_steps}"]
        )
        fly = train(
            sorted((work / "raw").glob("*.tar")), work / "run-fly", fly_recipe, progress=False
        )
        step_fly = (fly.data_seconds + fly.model_seconds) / fly_steps
    finally:
        if previous is None:
            os.environ.pop("DWM_MODEL_CACHE", None)
        else:
            os.environ["DWM_MODEL_CACHE"] = previous
        shutil.rmtree(work, ignore_errors=True)
    return [
        ("tiny step, cached latents (s)", f"{step_cached:.4f}"),
        ("data wait share of step, cached latents (target < 5%)", f"{100 * wait_share:.1f}%"),
        ("same, after step 1", f"{100 * steady:.1f}%"),
        ("same, one loader worker process, after step 1", f"{100 * steady_worker:.1f}%"),
        ("loader alone (samples/s)", f"{loader_rate:.0f}"),
        ("trainer consumption (samples/s)", f"{consume_rate:.0f}"),
        ("loader / trainer rate", f"{loader_rate / consume_rate:.1f}x"),
        ("step time, on-the-fly encoding / cached latents", f"{step_fly / step_cached:.1f}x"),
    ]
