"""Render a splat from pinhole cameras: gsplat's CUDA rasteriser on a GPU, else CPU compositing.

Both backends return the same `info` that gsplat's `DefaultStrategy` reads (means2d with its
gradient, radii, width, height, n_cameras), so training is backend-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dwm_data.cameras import Intrinsics
from dwm_data.extras import require

Params = dict[str, torch.Tensor]


@dataclass
class Rendered:
    colors: torch.Tensor  # [C,H,W,3], float in [0,1] (not clamped during training)
    alphas: torch.Tensor  # [C,H,W,1]
    info: dict[str, Any]


def gsplat_K(intrinsics: Intrinsics) -> np.ndarray:
    """Our intrinsics put pixel centres at integers (as Aria and OpenCV do); gsplat samples pixel
    j at j + 0.5, so its principal point is half a pixel further."""
    K = intrinsics.matrix.copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def sh_degree_of(params: Params) -> int:
    coeffs = 1 + (params["shN"].shape[1] if "shN" in params else 0)
    return int(round(coeffs**0.5)) - 1


def backend_name(device: torch.device | str) -> str:
    return "gsplat-cuda" if torch.device(device).type == "cuda" else "torch-cpu"


def render(
    params: Params,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
    sh_degree: int | None = None,
    camera_model: str = "pinhole",
) -> Rendered:
    """Render C views. viewmats [C,4,4] world->camera (OpenCV axes), Ks [C,3,3] from `gsplat_K`.

    `camera_model` "fisheye" is gsplat's equidistant model (r = f * theta), which is Aria's
    FISHEYE624 with zero distortion coefficients; generated captures are rendered with it.
    """
    degree = sh_degree_of(params) if sh_degree is None else sh_degree
    args = (params, viewmats, Ks, width, height, background, degree, camera_model)
    return _render_cuda(*args) if params["means"].is_cuda else _render_cpu(*args)


def _coefficients(params: Params) -> torch.Tensor:
    parts = [params["sh0"]] + ([params["shN"]] if "shN" in params else [])
    return torch.cat(parts, dim=1)


def _render_cuda(params, viewmats, Ks, width, height, background, degree, camera_model) -> Rendered:
    gsplat = require("gsplat", "aria")
    backgrounds = None if background is None else background.expand(len(viewmats), -1)
    colors, alphas, info = gsplat.rasterization(
        means=params["means"],
        quats=params["quats"],
        scales=torch.exp(params["scales"]),
        opacities=torch.sigmoid(params["opacities"]),
        colors=_coefficients(params),
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        sh_degree=degree,
        packed=False,
        backgrounds=backgrounds,
        camera_model=camera_model,
    )
    return Rendered(colors, alphas, info)


def _render_cpu(params, viewmats, Ks, width, height, background, degree, camera_model) -> Rendered:
    require("gsplat", "aria")
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    from dwm_data.splat.compositor import composite

    means = params["means"]
    covars, _ = _quat_scale_to_covar_preci(
        params["quats"], torch.exp(params["scales"]), compute_preci=False
    )
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, camera_model=camera_model
    )
    cam_centres = torch.linalg.inv(viewmats)[:, :3, 3]
    dirs = means[None] - cam_centres[:, None]
    coeffs = _coefficients(params)[None].expand(len(viewmats), -1, -1, -1)
    colors = torch.clamp_min(
        _spherical_harmonics(degree, dirs, coeffs[..., : (degree + 1) ** 2, :]) + 0.5, 0.0
    )
    image, alphas = composite(
        means2d,
        conics,
        torch.sigmoid(params["opacities"]),
        colors,
        depths,
        radii,
        width,
        height,
        background,
    )
    info = {
        "means2d": means2d,
        "radii": radii,
        "depths": depths,
        "width": width,
        "height": height,
        "n_cameras": len(viewmats),
        "gaussian_ids": None,
    }
    return Rendered(image, alphas, info)
