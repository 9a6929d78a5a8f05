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


def colors_from_views(
    points: np.ndarray,
    images: np.ndarray,
    viewmats: np.ndarray,
    Ks: np.ndarray,
    masks: np.ndarray | None = None,
) -> np.ndarray | None:
    """Mean colour of each point over the views that see it (no occlusion test), or None.

    SLAM points carry no colour; seeding the splat with the colours the points project onto
    saves most of the early steps, which matters at CPU speeds.
    """
    count = len(points)
    total, seen = np.zeros((count, 3)), np.zeros(count)
    height, width = images.shape[1:3]
    for index in range(len(images)):
        cam = points @ viewmats[index, :3, :3].T + viewmats[index, :3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = cam[:, :2] / z[:, None] @ Ks[index, :2, :2].T + Ks[index, :2, 2]  # gsplat K
        px = np.floor(uv).astype(np.int64)
        ok = (
            (z > 1e-3)
            & (px[:, 0] >= 0)
            & (px[:, 0] < width)
            & (px[:, 1] >= 0)
            & (px[:, 1] < height)
        )
        if masks is not None:
            ok[ok] &= masks[index][px[ok, 1], px[ok, 0]]
        total[ok] += images[index][px[ok, 1], px[ok, 0]]
        seen[ok] += 1
    if not seen.any():
        return None
    return np.where(seen[:, None] > 0, total / np.maximum(seen, 1)[:, None], 0.5)
