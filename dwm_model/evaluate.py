"""`dwm-data eval`: sample every (or the first N) shard samples and score them against the
recorded interaction video with PSNR and SSIM; writes `eval.json` and the generated videos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dwm_data.recipe import Recipe
from dwm_model.config import EvalConfig
from dwm_model.generate import WorldModel, preview, write_video
from dwm_model.metrics import psnr, ssim


def evaluate(shards: list[Path], model: WorldModel, recipe: Recipe, out: Path) -> dict[str, Any]:
    from dwm_data.store import read_decoded

    cfg = recipe.section("eval", EvalConfig)
    scores: dict[str, dict[str, float]] = {}
    for sample, frames in read_decoded(shards):
        if cfg.limit and len(scores) >= cfg.limit:
            break
        generated = model.generate(
            frames["static"], frames["hand"], sample.prompt, cfg.steps, cfg.guidance, cfg.seed
        )
        truth = frames["video"]
        scores[sample.key] = {"psnr": psnr(generated, truth), "ssim": ssim(generated, truth)}
        fps = sample.meta.get("fps", recipe.video.fps)
        write_video(out / "videos" / f"{sample.key}.mp4", generated, fps)
        write_video(
            out / "previews" / f"{sample.key}.mp4",
            preview(frames["static"], frames["hand"], generated, truth),
            fps,
        )
    count = len(scores)
    summary = {
        "samples": count,
        "psnr": sum(s["psnr"] for s in scores.values()) / max(count, 1),
        "ssim": sum(s["ssim"] for s in scores.values()) / max(count, 1),
        "settings": cfg.model_dump(),
        "per_sample": scores,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    return summary
