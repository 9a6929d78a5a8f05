"""The static video of a clip: a splat of the scene fitted to the clip's own frames, rendered
along the recovered cameras.

The splat learns the scene as it was before the interaction: from the frames before the first
hand when there are enough of them, else from all frames. The hands and arms are masked out of
the loss, and so, after part of the steps, is what the splat so far cannot explain (objects the
hands moved, people passing): pixels whose residual against its rendering stays high. What it
learns where the actor was comes from the frames in which that part of the scene was seen
uncovered. Every few training frames is held out; its PSNR (outside the masks) says how well
the splat renders views it has not seen. Scene points come from the reconstruction; cameras
given without points get points spread over the cameras' view frusta (the splat's
densification does the rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dwm_data.cameras import Intrinsics
from dwm_data.ego.options import EgoSection
from dwm_data.extras import require
from dwm_data.splat.render import Params

if TYPE_CHECKING:
    from dwm_data.splat.train import Views


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
    """A splat of the clip's scene from its frames (F, H, W, 3 uint8) and `keep` masks (False
    on the actor)."""
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
    pool, scene_state = training_frames(~keep.all(axis=(1, 2)), knobs.min_static_frames)
    heldout = pool[1 :: knobs.heldout_every] if len(pool) > knobs.heldout_every else []
    train = [i for i in pool if i not in heldout]
    seeds = points if len(points) else frustum_points(intr, cam_to_world, knobs.max_points // 10)
    if len(seeds) > knobs.max_points:
        pick = np.random.default_rng(0).choice(len(seeds), knobs.max_points, replace=False)
        seeds = seeds[np.sort(pick)]

    def progress(step: int, loss: float, gaussians: int) -> None:
        heartbeat(f"splat step {step}/{knobs.splat.steps}, loss {loss:.4f}, {gaussians} Gaussians")

    moving: list[float] = []

    def without_moving(params: Params, seen: Views) -> torch.Tensor:
        kept = transient_masks(params, seen, knobs)
        moving.append(float((seen.masks & ~kept).float().mean()))
        return kept

    remask = (int(knobs.splat.steps * knobs.transient_after), without_moving)
    params = train_splat(views.subset(train), seeds, None, knobs.splat, progress, remask)
    score = heldout_psnr(params, views.subset(heldout)) if heldout else None
    return StaticScene(
        params,
        {
            "backend": _backend(),
            "gaussians": len(params["means"]),
            "initial_points": len(seeds),
            "steps": knobs.splat.steps,
            "scene_state": scene_state,
            "train_frames": train,
            "heldout_frames": heldout,
            "heldout_psnr": None if score is None else round(score, 3),
            "moving_mask_coverage": round(moving[0], 4) if moving else None,
            "train_size": [width, height],
            "seconds": round(time.time() - started, 1),
        },
    )


def training_frames(has_actor: np.ndarray, minimum: int) -> tuple[list[int], str]:
    """The clip frames the splat learns from, and why: the scene as it was before the first
    hand (which may be about to move things), unless too few frames come before it."""
    first = int(np.argmax(has_actor)) if has_actor.any() else len(has_actor)
    if first >= minimum:
        return list(range(first)), f"before the interaction: the {first} frames before a hand"
    return list(range(len(has_actor))), (
        f"all frames, the actor masked: {first} frames before the first hand, fewer than "
        f"ego.min_static_frames={minimum}"
    )


def transient_masks(params: Params, views: Views, knobs: EgoSection):
    """The views' masks without what the splat cannot explain: pixels whose residual against
    its rendering stays high over a neighbourhood (objects that moved, people passing), beyond
    `transient_factor` times the clip's median residual and `transient_floor`."""
    torch = require("torch", "ego")
    cv2 = require("cv2", "ego")
    from dwm_data.splat.train import render_views

    height, width = views.images.shape[1:3]
    rendered = render_views(params, views.viewmats, views.Ks, width, height)
    residual = (rendered - views.images).abs().mean(-1).numpy()
    size = max(3, int(round(knobs.transient_blur * width)) | 1)
    blurred = np.stack([cv2.blur(r, (size, size)) for r in residual])
    masks = views.masks.numpy()
    scale = float(np.median(blurred[masks])) if masks.any() else 0.0
    moving = blurred > max(knobs.transient_floor, knobs.transient_factor * scale)
    return torch.from_numpy(masks & ~moving)


def render_static(
    params: Params, intrinsics: Intrinsics, cam_to_world: np.ndarray, max_width: int
) -> np.ndarray:
    """(F, H, W, 3) uint8: the splat seen by each camera at the intrinsics' size, rendered at
    most `max_width` wide and upscaled (bicubic): a CPU render's cost grows with the pixels each
    Gaussian covers, and a splat fitted to small frames holds no finer detail anyway."""
    torch = require("torch", "ego")
    cv2 = require("cv2", "ego")
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import render_views

    width = min(max_width, intrinsics.width)
    height = max(2, int(round(intrinsics.height * width / intrinsics.width)))
    at = intrinsics.scaled(width, height)
    images = render_views(
        params,
        torch.from_numpy(np.linalg.inv(cam_to_world)).float(),
        torch.from_numpy(np.stack([gsplat_K(at)] * len(cam_to_world))).float(),
        width,
        height,
    )
    frames = (images.numpy() * 255 + 0.5).astype(np.uint8)
    if width == intrinsics.width:
        return frames
    size = (intrinsics.width, intrinsics.height)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])


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
