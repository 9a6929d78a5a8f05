"""The static scene of a capture: a splat fitted to the exploration frames, cached per capture.

Every few exploration frames is held out of training; its PSNR is the one figure that says how
well the splat renders views it has not seen, and it is stored with every sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dwm_data.splat.ply import load_ply, save_ply
from dwm_data.splat.render import Params
from dwm_data.splat.train import SplatConfig, Views, heldout_psnr, train_splat

SPLAT_FILE, REPORT_FILE = "splat.ply", "splat.json"


@dataclass(frozen=True)
class SceneFit:
    heldout_psnr: float | None  # None when no view was held out
    train_views: int
    heldout_views: int
    gaussians: int
    steps: int
    seconds: float


def split_heldout(count: int, every: int) -> tuple[list[int], list[int]]:
    """Train / held-out positions: every `every`-th view (from the 2nd) is held out."""
    heldout = list(range(1, count, every)) if every > 0 else []
    train = [i for i in range(count) if i not in set(heldout)]
    return train, heldout


def cached_scene(cache: Path) -> tuple[Params, SceneFit] | None:
    """The splat a previous attempt at this unit trained, if it finished."""
    ply, report = cache / SPLAT_FILE, cache / REPORT_FILE
    if ply.exists() and report.exists():
        return load_ply(ply), SceneFit(**json.loads(report.read_text()))
    return None


def fit_scene(
    views: Views,
    points: np.ndarray,
    config: SplatConfig,
    heldout_every: int,
    cache: Path,
    heartbeat: Callable[[str], None] = lambda message: None,
) -> tuple[Params, SceneFit]:
    """Train the capture's splat and keep it in `cache` (which survives restarts of the unit)."""
    train, heldout = split_heldout(len(views), heldout_every)
    started = time.time()

    def progress(step: int, loss: float, gaussians: int) -> None:
        heartbeat(f"splat step {step}/{config.steps}, loss {loss:.4f}, {gaussians} Gaussians")

    params = train_splat(views.subset(train), points, None, config, progress)
    score = round(heldout_psnr(params, views.subset(heldout)), 3) if heldout else None
    fit = SceneFit(
        heldout_psnr=score,
        train_views=len(train),
        heldout_views=len(heldout),
        gaussians=len(params["means"]),
        steps=config.steps,
        seconds=round(time.time() - started, 1),
    )
    cache.mkdir(parents=True, exist_ok=True)
    save_ply(params, cache / SPLAT_FILE)
    (cache / REPORT_FILE).write_text(json.dumps(asdict(fit)))  # written last: marks it complete
    return params, fit
