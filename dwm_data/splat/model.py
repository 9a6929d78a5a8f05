"""A splat's parameters in gsplat's layout, and their initialisation from a point cloud.

The layout (log scales, logit opacities, wxyz quaternions, SH DC in `sh0` [N,1,3], higher bands in
`shN`) is what gsplat's rasteriser, strategies and the usual `.ply` files expect.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SH_C0 = 0.28209479177387814  # the degree-0 spherical harmonic, so colour = sh0 * C0 + 0.5


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def init_params(
    points: np.ndarray,
    colors: np.ndarray | None,
    sh_degree: int,
    init_opacity: float = 0.1,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Gaussians at the points, sized by the mean distance to their 3 nearest neighbours.

    Semidense SLAM points carry no colour; grey then, the first steps fix it.
    """
    gen = torch.Generator().manual_seed(seed)
    means = torch.as_tensor(points, dtype=torch.float32)
    count = len(means)
    rgb = (
        torch.full((count, 3), 0.5)
        if colors is None
        else torch.as_tensor(colors, dtype=torch.float32).clamp(0, 1)
    )
    dist = _knn_mean_distance(means, k=3).clamp_min(1e-4)
    params = {
        "means": means,
        "scales": torch.log(dist)[:, None].repeat(1, 3),
        "quats": torch.rand(count, 4, generator=gen),
        "opacities": torch.full((count,), math.log(init_opacity / (1 - init_opacity))),
        "sh0": rgb_to_sh0(rgb)[:, None, :],
    }
    if sh_degree > 0:
        params["shN"] = torch.zeros(count, (sh_degree + 1) ** 2 - 1, 3)
    return params


def _knn_mean_distance(points: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Mean distance to the k nearest other points, chunked so 100k points fit in memory."""
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], points)
        nearest = torch.topk(d, min(k + 1, len(points)), largest=False).values[:, 1:]
        out.append(nearest.mean(dim=1))
    return torch.cat(out)


def scene_scale(cam_centres: np.ndarray) -> float:
    """How far the cameras spread (gsplat's rule: max distance from their mean x 1.1)."""
    centre = cam_centres.mean(axis=0)
    return float(np.linalg.norm(cam_centres - centre, axis=1).max() * 1.1)
