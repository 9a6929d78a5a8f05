"""`dwm-data eval`: sample every (or the first N) shard samples and score them against the
recorded interaction video with PSNR and SSIM; writes `eval.json`, the generated videos and
side-by-side previews (static | hand | generated | recorded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dwm_data.recipe import Recipe
from dwm_model.config import EvalConfig
from dwm_model.generate import WorldModel, preview, write_video
from dwm_model.metrics import psnr, ssim


def evaluate(shards: list[Path], model: WorldModel, recipe: Recipe, out: Path) -> dict[str, Any]:
    """Score the model on the shards' samples; broken ones are skipped and counted."""
    from dwm_model.data import make_loader, video_decoder
    from dwm_model.generate import to_frames

    cfg = recipe.section("eval", EvalConfig)
    video = recipe.video
    stage = video_decoder(video.frames, video.width, video.height)
    scores: dict[str, dict[str, float]] = {}
    skipped = 0
    for batch in make_loader([str(s) for s in shards], stage, 1, train=False):
        skipped += batch["skipped"]
        if cfg.limit and len(scores) >= cfg.limit:
            break
        key, prompt = batch["key"][0], batch["prompt"][0]
        static, hand, truth = (to_frames(batch[name][0]) for name in ("static", "hand", "video"))
        generated = model.generate(static, hand, prompt, cfg.steps, cfg.guidance, cfg.seed)
        scores[key] = {"psnr": psnr(generated, truth), "ssim": ssim(generated, truth)}
        write_video(out / "videos" / f"{key}.mp4", generated, video.rate)
        write_video(
            out / "previews" / f"{key}.mp4", preview(static, hand, generated, truth), video.rate
        )
    count = len(scores)
    summary = {
        "samples": count,
        "skipped": skipped,
        "psnr": sum(s["psnr"] for s in scores.values()) / max(count, 1),
        "ssim": sum(s["ssim"] for s in scores.values()) / max(count, 1),
        "settings": cfg.model_dump(),
        "per_sample": scores,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    return summary
