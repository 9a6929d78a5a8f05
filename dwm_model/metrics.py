"""Offline video metrics: per-frame PSNR and SSIM averaged over frames. Nothing is downloaded.

SSIM is pinned to the common Gaussian form (11x11 window, sigma 1.5, K1 0.01, K2 0.03, data range
1, per channel, valid region), the torchmetrics default; implementations disagree by several
hundredths on the same frames, so scores are only comparable under one definition.
"""

from __future__ import annotations

import numpy as np

from dwm_data.errors import DwmDataError

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _pair(a: np.ndarray, b: np.ndarray):
    import torch

    if a.shape != b.shape or a.ndim != 4:
        raise DwmDataError(
            f"videos to compare must be the same (F, H, W, 3); got {a.shape}, {b.shape}"
        )
    to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255.0  # noqa: E731
    return to(a), to(b)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of each frame's PSNR (dB); identical frames count as 100 dB."""
    x, y = _pair(a, b)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    values = 10 * (1.0 / mse.clamp_min(1e-10)).log10()
    return float(values.clamp_max(100.0).mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of the Gaussian-window SSIM."""
    import torch

    x, y = _pair(a, b)
    if min(x.shape[-2:]) < WINDOW:
        raise DwmDataError(
            f"frames of {x.shape[-1]}x{x.shape[-2]} are smaller than the SSIM window"
        )
    coords = torch.arange(WINDOW, dtype=torch.float64) - WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SIGMA**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, WINDOW, WINDOW)

    def blur(t):
        return torch.nn.functional.conv2d(t, kernel, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = K1**2, K2**2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(value.mean(dim=(1, 2, 3)).mean())
