"""A vectorised, differentiable front-to-back compositor of projected Gaussians, for CPU.

gsplat 1.5.3's pixel kernel exists only in CUDA (its torch fallback still calls CUDA for tile
intersection), so on CPU we expand every visible Gaussian into (Gaussian, pixel) pairs over its
3.33-sigma box, cut the pairs the CUDA kernel would skip (too faint, or behind a pixel that is
already opaque), stable-sort by pixel (keeping depth order) and accumulate transmittance as a segmented prefix sum of log(1 - alpha). That sum runs in
float64: in float32 its drift over ~10^6 pairs reaches 1e-2 in the image. Pixel centres sit at
(j + 0.5, i + 0.5), gsplat's convention, so intrinsics must come through `render.gsplat_K`.
"""

from __future__ import annotations

import torch

ALPHA_MIN = 1.0 / 255.0  # the CUDA kernel skips fainter contributions
ALPHA_MAX = 0.999  # and clamps stronger ones, so a Gaussian never hides all behind it
T_MIN = 1e-4  # a pixel is done once its transmittance would fall to this (the CUDA early stop)


def composite(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite C cameras' projected Gaussians into images.

    Shapes: means2d [C,N,2], conics [C,N,3], opacities [N] or [C,N], colors [C,N,D],
    depths [C,N], radii [C,N,2] (int, 0 = culled). Returns colors [C,H,W,D] and alphas [C,H,W,1].
    """
    cams, count = depths.shape
    channels = colors.shape[-1]
    if opacities.dim() == 1:
        opacities = opacities.expand(cams, count)
    pixels = height * width
    cam_ids, gauss_ids = _visible_in_depth_order(depths, radii)
    pair_cam, pair_gauss, px, py = _expand_boxes(
        means2d.detach(), radii, cam_ids, gauss_ids, width, height
    )

    def falloff(mean: torch.Tensor, conic: torch.Tensor) -> torch.Tensor:
        dx = px.to(mean.dtype) + 0.5 - mean[:, 0]
        dy = py.to(mean.dtype) + 0.5 - mean[:, 1]
        return 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy

    with torch.no_grad():
        sigma = falloff(means2d[pair_cam, pair_gauss], conics[pair_cam, pair_gauss])
        alpha = opacities[pair_cam, pair_gauss] * torch.exp(-sigma)
        keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
    pair_cam, pair_gauss, px, py = pair_cam[keep], pair_gauss[keep], px[keep], py[keep]

    pixel_ids = pair_cam * pixels + py * width + px
    pixel_ids, order = torch.sort(pixel_ids, stable=True)  # stable: depth order within a pixel
    pair_cam, pair_gauss, px, py = pair_cam[order], pair_gauss[order], px[order], py[order]

    with torch.no_grad():  # drop what lies behind opaque surfaces before building the graph
        alpha = torch.clamp(alpha[keep][order], max=ALPHA_MAX)
        after = _segmented_transmittance(alpha, pixel_ids) * (1 - alpha.double())
        live = after > T_MIN
    pair_cam, pair_gauss, px, py = pair_cam[live], pair_gauss[live], px[live], py[live]
    pixel_ids = pixel_ids[live]

    sigma = falloff(means2d[pair_cam, pair_gauss], conics[pair_cam, pair_gauss])
    alpha = torch.clamp(opacities[pair_cam, pair_gauss] * torch.exp(-sigma), max=ALPHA_MAX)
    transmittance = _segmented_transmittance(alpha, pixel_ids)
    weights = (alpha * transmittance).to(colors.dtype)

    image = colors.new_zeros(cams * pixels, channels)
    image = image.index_add(0, pixel_ids, weights[:, None] * colors[pair_cam, pair_gauss])
    coverage = colors.new_zeros(cams * pixels).index_add(0, pixel_ids, weights)
    if background is not None:
        image = image + (1.0 - coverage)[:, None] * background.to(colors.dtype)
    return image.view(cams, height, width, channels), coverage.view(cams, height, width, 1)


def _visible_in_depth_order(
    depths: torch.Tensor, radii: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(camera, Gaussian) ids of visible Gaussians, nearest first within each camera."""
    visible = (radii > 0).all(dim=-1)
    cam_ids, gauss_ids = visible.nonzero(as_tuple=True)
    order = torch.argsort(depths.detach()[cam_ids, gauss_ids], stable=True)
    cam_ids, gauss_ids = cam_ids[order], gauss_ids[order]
    by_cam = torch.argsort(cam_ids, stable=True)
    return cam_ids[by_cam], gauss_ids[by_cam]


def _expand_boxes(
    means2d: torch.Tensor,
    radii: torch.Tensor,
    cam_ids: torch.Tensor,
    gauss_ids: torch.Tensor,
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One (camera, Gaussian, x, y) row per pixel inside each Gaussian's radius box."""
    mean = means2d[cam_ids, gauss_ids]
    radius = radii[cam_ids, gauss_ids].to(mean.dtype)
    x0 = torch.floor(mean[:, 0] - radius[:, 0]).clamp(0, width).long()
    x1 = torch.ceil(mean[:, 0] + radius[:, 0]).clamp(0, width).long()
    y0 = torch.floor(mean[:, 1] - radius[:, 1]).clamp(0, height).long()
    y1 = torch.ceil(mean[:, 1] + radius[:, 1]).clamp(0, height).long()
    box_w, box_h = x1 - x0, y1 - y0
    sizes = box_w * box_h
    rows = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    local = torch.arange(int(sizes.sum())) - starts[rows]
    px = x0[rows] + local % box_w[rows]
    py = y0[rows] + local // box_w[rows]
    return cam_ids[rows], gauss_ids[rows], px, py


def _segmented_transmittance(alpha: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """Exclusive product of (1 - alpha) within runs of equal, sorted segment ids, in float64."""
    log_keep = torch.log1p(-alpha.to(torch.float64))
    inclusive = torch.cumsum(log_keep, 0)
    exclusive = inclusive - log_keep
    first = torch.ones_like(segment_ids, dtype=torch.bool)
    first[1:] = segment_ids[1:] != segment_ids[:-1]
    run = torch.cumsum(first.long(), 0) - 1
    return torch.exp(exclusive - exclusive[first][run])


def reference_composite(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same image by brute force, one Gaussian at a time over the whole image (float64).

    It shares nothing with `composite` but the rules (box, cuts, clamp), so it is the yardstick
    for the tests and for the speed figure in the benchmark.
    """
    cams, count = depths.shape
    if opacities.dim() == 1:
        opacities = opacities.expand(cams, count)
    ys, xs = torch.meshgrid(  # pixel centres at +0.5, as gsplat samples them
        torch.arange(height, dtype=torch.float64) + 0.5,
        torch.arange(width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    images, alphas = [], []
    for c in range(cams):
        image = torch.zeros(height, width, colors.shape[-1], dtype=torch.float64)
        transmittance = torch.ones(height, width, dtype=torch.float64)
        done = torch.zeros(height, width, dtype=torch.bool)
        for g in torch.argsort(depths[c].detach(), stable=True).tolist():
            rx, ry = radii[c, g].tolist()
            if rx <= 0 or ry <= 0:
                continue
            mx, my = means2d[c, g].double()
            inside = (
                (xs >= torch.floor(mx.detach() - rx) + 0.5)
                & (xs < torch.ceil(mx.detach() + rx))
                & (ys >= torch.floor(my.detach() - ry) + 0.5)
                & (ys < torch.ceil(my.detach() + ry))
            )
            a, b, cc = conics[c, g].double()
            dx, dy = xs - mx, ys - my
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp(opacities[c, g].double() * torch.exp(-sigma), max=ALPHA_MAX)
            used = inside & (sigma.detach() >= 0) & (alpha.detach() >= ALPHA_MIN) & ~done
            stops = used & (transmittance.detach() * (1 - alpha.detach()) <= T_MIN)
            done = done | stops
            alpha = torch.where(used & ~stops, alpha, torch.zeros_like(alpha))
            image = image + (alpha * transmittance)[..., None] * colors[c, g].double()
            transmittance = transmittance * (1 - alpha)
        if background is not None:
            image = image + transmittance[..., None] * background.double()
        images.append(image)
        alphas.append((1 - transmittance)[..., None])
    return torch.stack(images), torch.stack(alphas)
