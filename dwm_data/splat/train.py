"""Fit a splat to posed images with gsplat's densification strategy, on CPU or CUDA.

The loop follows gsplat's `simple_trainer` (Adam per parameter group, means LR decayed 100x,
`DefaultStrategy` growing and pruning), with an L1 loss restricted to the pixels a mask keeps
(the wearer's hands are not part of the static scene). gsplat 1.5.3 never resets opacities
(see `_opacity_reset_is_broken`); we do it ourselves, so floaters still get pruned.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dwm_data.extras import require
from dwm_data.splat.config import SplatConfig
from dwm_data.splat.model import colors_from_views, init_params, scene_scale
from dwm_data.splat.render import Params, render


@dataclass
class Views:
    """Posed training images: viewmats world->camera (OpenCV), Ks in gsplat's convention."""

    images: torch.Tensor  # [V,H,W,3] float in [0,1]
    viewmats: torch.Tensor  # [V,4,4]
    Ks: torch.Tensor  # [V,3,3]
    masks: torch.Tensor | None = None  # [V,H,W] bool, True where the pixel shows the static scene

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: list[int]) -> Views:
        masks = None if self.masks is None else self.masks[indices]
        return Views(self.images[indices], self.viewmats[indices], self.Ks[indices], masks)

    def to(self, device: torch.device) -> Views:
        masks = None if self.masks is None else self.masks.to(device)
        return Views(self.images.to(device), self.viewmats.to(device), self.Ks.to(device), masks)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_splat(
    views: Views,
    points: np.ndarray,
    colors: np.ndarray | None,
    config: SplatConfig,
    progress: Callable[[int, float, int], None] | None = None,
    remask: tuple[int, Callable[[Params, Views], torch.Tensor]] | None = None,
) -> Params:
    """Fit Gaussians initialised at `points` to the views; returns detached parameters (CPU).

    Without `colors`, points take the colours they project onto in the views.
    `progress(step, loss, gaussians)` is called every 100 steps (heartbeats, progress bars).
    `remask = (step, masks_of)`: at that step the views' masks become `masks_of(params, views)`
    (what the splat so far cannot explain, such as objects that move, can then leave the loss).
    """
    with torch_threads(config.threads):
        return _train(views, points, colors, config, progress, remask)


def _train(
    views: Views,
    points: np.ndarray,
    colors: np.ndarray | None,
    config: SplatConfig,
    progress: Callable[[int, float, int], None] | None,
    remask: tuple[int, Callable[[Params, Views], torch.Tensor]] | None,
) -> Params:
    require("gsplat", "aria")
    from gsplat.strategy import DefaultStrategy
    from gsplat.strategy.ops import reset_opa

    if colors is None:
        colors = colors_from_views(
            points,
            views.images.numpy(),
            views.viewmats.double().numpy(),
            views.Ks.double().numpy(),
            None if views.masks is None else views.masks.numpy(),
        )
    dev = device()
    torch.manual_seed(config.seed)
    views = views.to(dev)
    centres = torch.linalg.inv(views.viewmats)[:, :3, 3].cpu().numpy()
    scale = max(scene_scale(centres), 1e-3)
    params = torch.nn.ParameterDict(
        {
            k: torch.nn.Parameter(v.to(dev))
            for k, v in init_params(
                points, colors, config.sh_degree, config.init_opacity, config.seed
            ).items()
        }
    )
    rates = {
        "means": config.lr_means * scale,
        "scales": config.lr_scales,
        "quats": config.lr_quats,
        "opacities": config.lr_opacities,
        "sh0": config.lr_sh0,
        "shN": config.lr_shN,
    }
    optimizers = {
        k: torch.optim.Adam([{"params": params[k], "lr": rates[k], "name": k}], eps=1e-15)
        for k in params
    }
    decay = torch.optim.lr_scheduler.ExponentialLR(
        optimizers["means"], gamma=0.01 ** (1.0 / max(config.steps, 1))
    )
    strategy = DefaultStrategy(
        prune_opa=config.prune_opa,
        grow_grad2d=config.grow_grad2d,
        refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop,
        refine_every=config.refine_every,
        reset_every=config.reset_every,
    )
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=scale)
    reset_ourselves = _opacity_reset_is_broken()
    gen = torch.Generator().manual_seed(config.seed)
    height, width = views.images.shape[1:3]

    for step in range(config.steps):
        if remask is not None and step == remask[0]:
            with torch.no_grad():
                frozen = {k: v.detach().cpu() for k, v in params.items()}
                views.masks = remask[1](frozen, views.to(torch.device("cpu"))).to(dev)
        i = int(torch.randint(len(views), (1,), generator=gen))
        out = render(dict(params), views.viewmats[i : i + 1], views.Ks[i : i + 1], width, height)
        strategy.step_pre_backward(params, optimizers, state, step, out.info)
        loss = _masked_l1(
            out.colors[0], views.images[i], None if views.masks is None else views.masks[i]
        )
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        decay.step()
        strategy.step_post_backward(params, optimizers, state, step, out.info, packed=False)
        if config.max_gaussians and len(params["means"]) >= config.max_gaussians:
            strategy.refine_stop_iter = min(strategy.refine_stop_iter, step)
        if (
            reset_ourselves
            and 0 < step < strategy.refine_stop_iter
            and step % config.reset_every == 0
        ):
            reset_opa(params, optimizers, state, value=config.prune_opa * 2.0)
        if progress is not None and step % 100 == 0:
            progress(step, loss.item(), len(params["means"]))
    return {k: v.detach().cpu() for k, v in params.items()}


def _opacity_reset_is_broken() -> bool:
    """gsplat 1.5.3 writes `step % self.reset_every == 0 & step > 0`; `&` binds first, so the
    chained comparison ends in `0 > 0` and the reset never runs (fixed upstream, PR #776)."""
    from gsplat.strategy import DefaultStrategy

    return "== 0 & step > 0" in inspect.getsource(DefaultStrategy.step_post_backward)


def _masked_l1(
    image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    error = (image - target).abs()
    if mask is None:
        return error.mean()
    return (error * mask[..., None]).sum() / (mask.sum() * 3).clamp_min(1)


def psnr(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of images in [0,1], over the masked pixels when a mask is given."""
    error = (image.clamp(0, 1) - target) ** 2
    mse = error.mean() if mask is None else (error * mask[..., None]).sum() / (mask.sum() * 3)
    return float(10 * math.log10(1.0 / max(float(mse), 1e-12)))


@torch.no_grad()
def render_views(
    params: Params,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    camera_model: str = "pinhole",
    threads: int = 1,
) -> torch.Tensor:
    """[C,H,W,3] float images in [0,1], one view at a time to bound memory."""
    dev = device()
    on = {k: v.to(dev) for k, v in params.items()}
    with torch_threads(threads):
        frames = [
            render(
                on,
                viewmats[i : i + 1].to(dev),
                Ks[i : i + 1].to(dev),
                width,
                height,
                camera_model=camera_model,
            ).colors[0]
            for i in range(len(viewmats))
        ]
    return torch.stack(frames).clamp(0, 1).cpu()


def heldout_psnr(params: Params, views: Views) -> float:
    """Mean PSNR over views the splat was not trained on (masked pixels only)."""
    height, width = views.images.shape[1:3]
    images = render_views(params, views.viewmats, views.Ks, width, height)
    scores = [
        psnr(images[i], views.images[i], None if views.masks is None else views.masks[i])
        for i in range(len(views))
    ]
    return float(np.mean(scores))
