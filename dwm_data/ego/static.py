"""The static video of a clip: a splat of the scene fitted to the clip's own frames, rendered
along the recovered cameras.

The hands and arms are masked out of the loss, so what the splat learns where the actor was
comes from the frames in which that part of the scene was seen uncovered. Every few frames is
held out of training; its PSNR (outside the actor) says how well the splat renders views it has
not seen. Scene points come from the reconstruction; cameras given without points get points
spread over the cameras' view frusta (the splat's densification does the rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.ego.options import EgoSection
from dwm_data.extras import require
from dwm_data.splat.render import Params


@dataclass(frozen=True)
class StaticScene:
    params: Params
    report: dict  # gaussians, steps, train/held-out frames, held-out PSNR, seconds


def fit_static(
    frames: np.ndarray,
    keep: np.ndarray,
    intrinsics: Intrinsics,
    cam_to_world: np.ndarray,
    points: np.ndarray,
    knobs: EgoSection,
    heartbeat: Callable[[str], None] = lambda message: None,
) -> StaticScene:
    """A splat of the clip's scene from its frames (F, H, W, 3 uint8) and `keep` masks."""
    torch = require("torch", "ego")
    cv2 = require("cv2", "ego")
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import Views, heldout_psnr, train_splat

    started = time.time()
    width = min(knobs.train_width, intrinsics.width)
    height = max(2, int(round(intrinsics.height * width / intrinsics.width / 2)) * 2)
    intr = intrinsics.scaled(width, height)
    images = np.stack(
        [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    )
    masks = np.stack(
        [
            cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
            for m in keep
        ]
    )
    views = Views(
        images=torch.from_numpy(images).float() / 255.0,
        viewmats=torch.from_numpy(np.linalg.inv(cam_to_world)).float(),
        Ks=torch.from_numpy(np.stack([gsplat_K(intr)] * len(frames))).float(),
        masks=torch.from_numpy(masks),
    )
    heldout = list(range(1, len(frames), knobs.heldout_every))
    train = [i for i in range(len(frames)) if i not in heldout]
    seeds = points if len(points) else frustum_points(intr, cam_to_world, knobs.max_points // 10)
    if len(seeds) > knobs.max_points:
        pick = np.random.default_rng(0).choice(len(seeds), knobs.max_points, replace=False)
        seeds = seeds[np.sort(pick)]

    def progress(step: int, loss: float, gaussians: int) -> None:
        heartbeat(f"splat step {step}/{knobs.splat.steps}, loss {loss:.4f}, {gaussians} Gaussians")

    params = train_splat(views.subset(train), seeds, None, knobs.splat, progress)
    score = heldout_psnr(params, views.subset(heldout)) if heldout else None
    return StaticScene(
        params,
        {
            "backend": _backend(),
            "gaussians": len(params["means"]),
            "initial_points": len(seeds),
            "steps": knobs.splat.steps,
            "train_frames": len(train),
            "heldout_frames": len(heldout),
            "heldout_psnr": None if score is None else round(score, 3),
            "train_size": [width, height],
            "seconds": round(time.time() - started, 1),
        },
    )


def render_static(params: Params, intrinsics: Intrinsics, cam_to_world: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8: the splat seen by each camera at the intrinsics' size."""
    torch = require("torch", "ego")
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import render_views

    images = render_views(
        params,
        torch.from_numpy(np.linalg.inv(cam_to_world)).float(),
        torch.from_numpy(np.stack([gsplat_K(intrinsics)] * len(cam_to_world))).float(),
        intrinsics.width,
        intrinsics.height,
    )
    return (images.numpy() * 255 + 0.5).astype(np.uint8)


def frustum_points(intrinsics: Intrinsics, cam_to_world: np.ndarray, count: int) -> np.ndarray:
    """Points on random rays of the cameras at depths spread over the path's scale."""
    rng = np.random.default_rng(0)
    centres = cam_to_world[:, :3, 3]
    spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    depth_scale = max(spread * 4, 1.0)
    which = rng.integers(len(cam_to_world), size=count)
    u = rng.uniform(0, intrinsics.width, count)
    v = rng.uniform(0, intrinsics.height, count)
    rays = np.stack(
        [(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, np.ones(count)],
        1,
    )
    depth = rng.uniform(0.3, 1.0, count) * depth_scale
    cam = rays * depth[:, None]
    rotation, shift = cam_to_world[which, :3, :3], cam_to_world[which, :3, 3]
    return np.einsum("nij,nj->ni", rotation, cam) + shift


def _backend() -> str:
    from dwm_data.splat.render import backend_name
    from dwm_data.splat.train import device

    return backend_name(device())
