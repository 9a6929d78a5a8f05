"""The static scene of a capture: a splat fitted to the exploration frames, cached per capture.

Every few exploration frames is held out of training; its PSNR is the one figure that says how
well the splat renders views it has not seen, and it is stored with every sample.

The splat starts from MPS's semidense points; a capture without MPS (a Gen2 recording posed by
its own VIO) has none, and starts from random points inside the exploration views instead, as
gsplat's trainer does without structure from motion.
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


NEAR_M, FAR_M = 0.3, 4.0  # depth range of random initial points: arm's length to a room's far wall


def view_points(views: Views, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) world points at random depths along random static-scene pixels of the views."""
    images, viewmats, Ks = views.images, views.viewmats.numpy(), views.Ks.numpy()
    height, width = images.shape[1:3]
    view = rng.integers(0, len(views), count)
    u, v = rng.uniform(0, width, count), rng.uniform(0, height, count)
    if views.masks is not None:
        inside = views.masks.numpy()[view, v.astype(int), u.astype(int)]
        view, u, v = view[inside], u[inside], v[inside]
    depth = rng.uniform(NEAR_M, FAR_M, len(view))
    K = Ks[view]  # gsplat's K: pixel centres at +0.5, as u and v above
    cam = np.stack(
        [(u - K[:, 0, 2]) / K[:, 0, 0] * depth, (v - K[:, 1, 2]) / K[:, 1, 1] * depth, depth], -1
    )
    camera_world = np.linalg.inv(viewmats[view])
    return np.einsum("nij,nj->ni", camera_world[:, :3, :3], cam) + camera_world[:, :3, 3]


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
