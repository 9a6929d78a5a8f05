"""`dwm-data eval`: the official metrics of a trained model on shard samples.

Each sample is generated `eval.seeds` times (seeds seed, seed+1, ...), every prediction is
written as an mp4 and read back, and scored against the recorded video as decoded from its mp4,
as the official `tests/compute_metrics.py` scores files; a sample's score is the mean over its
seeds, the table's last row the mean over samples. Written to OUT: `metrics.json` (everything,
per seed), `metrics.csv` and `metrics.md` (the table), `videos/<key>/seed-<n>.mp4` and
`previews/<key>.mp4` (static | hand | generated | recorded, first seed).
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_data.recipe import Recipe
from dwm_model.config import EvalConfig
from dwm_model.generate import WorldModel, preview, write_video
from dwm_model.metrics import HIGHER_IS_BETTER, Scorer

log = logging.getLogger(__name__)
FILES = ("metrics.json", "metrics.csv", "metrics.md")


def local_path(text: str) -> Path:
    """A weights path from the recipe: `~` expanded, relative to the folder eval runs in."""
    return Path(text).expanduser().resolve()


def evaluate(
    shards: list[Path],
    model: WorldModel,
    recipe: Recipe,
    out: Path,
    notify: Callable[[str], None] = log.warning,
) -> dict[str, Any]:
    """Score the model on the shards' samples; broken ones are skipped and counted. A metric
    whose weights are missing is left out and `notify` gets the line saying what and where."""
    from dwm_data.video import decode
    from dwm_model.data import make_loader, video_decoder
    from dwm_model.generate import to_frames

    cfg = recipe.section("eval", EvalConfig)
    if cfg.seeds < 1:
        raise DwmDataError(f"eval.seeds must be at least 1, got {cfg.seeds}")
    scorer = Scorer(cfg.metrics, local_path(cfg.lpips_backbone), local_path(cfg.dreamsim_folder))
    for line in scorer.missing.values():
        notify(line)
    video = recipe.video
    stage = video_decoder(video.frames, video.width, video.height, video.resize)
    per_sample: dict[str, dict[str, Any]] = {}
    skipped = 0
    for batch in make_loader([str(s) for s in shards], stage, 1, train=False):
        skipped += batch["skipped"]
        if cfg.limit and len(per_sample) >= cfg.limit:
            break
        key, prompt = batch["key"][0], batch["prompt"][0]
        static, hand, truth = (to_frames(batch[name][0]) for name in ("static", "hand", "video"))
        runs = []
        first = cfg.seed + len(
            per_sample
        )  # the official batch inference seeds clip i with seed + i
        for seed in range(first, first + cfg.seeds):
            generated = model.generate(
                static, hand, prompt, cfg.steps, cfg.guidance, seed, sampler=cfg.sampler
            )
            path = out / "videos" / key / f"seed-{seed}.mp4"
            write_video(path, generated, video.rate)
            runs.append({"seed": seed, **scorer(decode(path), truth)})
            if seed == first:
                side = preview(static, hand, generated, truth)
                write_video(out / "previews" / f"{key}.mp4", side, video.rate)
        per_sample[key] = {
            **{name: statistics.fmean(r[name] for r in runs) for name in scorer.names},
            "per_seed": runs,
        }
    summary = {
        "samples": len(per_sample),
        "skipped": skipped,
        "seeds": cfg.seeds,
        "metrics": scorer.names,
        "mean": {
            name: statistics.fmean(s[name] for s in per_sample.values()) if per_sample else None
            for name in scorer.names
        },
        "missing": scorer.missing,
        "settings": cfg.model_dump(),
        "per_sample": per_sample,
    }
    write_tables(summary, out)
    return summary


def table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per sample, then the mean) with each metric's direction."""
    names = summary["metrics"]
    arrows = [f"{name} {'↑' if HIGHER_IS_BETTER[name] else '↓'}" for name in names]
    header = ["sample", *arrows]

    def cells(scores: dict[str, Any]) -> list[str]:
        return [_figure(name, scores[name]) for name in names]

    rows = [[key, *cells(scores)] for key, scores in summary["per_sample"].items()]
    count, seeds = summary["samples"], summary["seeds"]
    label = f"mean ({count} sample{'s' * (count != 1)} x {seeds} seed{'s' * (seeds != 1)})"
    rows.append([label, *cells(summary["mean"])])
    return header, rows


def _figure(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if name == "psnr" else f"{value:.4f}"


def write_tables(summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    header, rows = table(summary)
    with (out / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample", *summary["metrics"]])
        for key, scores in summary["per_sample"].items():
            writer.writerow([key, *(scores[name] for name in summary["metrics"])])
        writer.writerow(["mean", *(summary["mean"][name] for name in summary["metrics"])])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [f"\n{line}" for line in summary["missing"].values()]
    (out / "metrics.md").write_text("\n".join(lines) + "\n")
