"""The CPU compositor against the brute-force reference on the same projected Gaussians, and
the cost of splat training on CPU, both on the generated room of `dwm_data.fixtures.aria`."""

from __future__ import annotations

import math
import time

import numpy as np

from dwm_data.bench import interleaved


def _projected(count: int, width: int, height: int):
    """A room scene of about `count` Gaussians projected by gsplat's torch code into one view."""
    import torch
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    from dwm_data.cameras import Intrinsics
    from dwm_data.fixtures.aria import room_scene, upright_path
    from dwm_data.splat.render import gsplat_K

    area = 2 * 3.0 * 3.0 + 4 * 3.0 * 2.2  # the room's six faces, m^2
    params = room_scene(math.sqrt(area / count), np.random.default_rng(0))
    viewmat = torch.from_numpy(np.linalg.inv(upright_path(1.0, 3.0))).float()[None]
    K = torch.from_numpy(gsplat_K(Intrinsics.from_fov(width, height, 80))).float()[None]
    covars, _ = _quat_scale_to_covar_preci(
        params["quats"], torch.exp(params["scales"]), compute_preci=False
    )
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        params["means"], covars, viewmat, K, width, height
    )
    colors = (0.28209479177387814 * params["sh0"][:, 0] + 0.5)[None]
    opacities = torch.sigmoid(params["opacities"])
    return len(params["means"]), (means2d, conics, opacities, colors, depths, radii, width, height)


def _compositor_rows(count: int, width: int, height: int, repeats: int) -> list[tuple[str, str]]:
    import torch

    from dwm_data.splat.compositor import composite, reference_composite
    from dwm_data.splat.train import torch_threads

    actual, args = _projected(count, width, height)
    leaves = [args[0].clone().requires_grad_(True), args[1].clone().requires_grad_(True)]

    def ours_forward_backward() -> None:
        image, _ = composite(leaves[0], leaves[1], *args[2:])
        image.sum().backward()

    def ours_forward() -> None:
        with torch.no_grad():
            composite(*args)

    def reference_forward() -> None:
        with torch.no_grad():
            reference_composite(*args)

    with torch_threads(1):
        fwd_bwd, fwd = interleaved(ours_forward_backward, ours_forward, repeats)
        ours, ref = interleaved(ours_forward, reference_forward, 1)
        error = (composite(*args)[0].double() - reference_composite(*args)[0]).abs().max()
    size = f"{width}x{height}, {actual} Gaussians"
    return [
        (f"compositor forward+backward ({size})", f"{fwd_bwd * 1e3:.0f} ms"),
        (f"compositor forward ({size})", f"{fwd * 1e3:.0f} ms"),
        (f"brute-force reference forward ({size})", f"{ref:.2f} s"),
        ("compositor speed-up vs brute force (forward)", f"{ref / ours:.0f}x"),
        ("compositor max error vs brute force", f"{float(error):.1e}"),
    ]


def _training_rows(steps: int) -> list[tuple[str, str]]:
    import torch

    from dwm_data.cameras import Intrinsics
    from dwm_data.fixtures.aria import room_scene, upright_path
    from dwm_data.splat.render import gsplat_K
    from dwm_data.splat.train import SplatConfig, Views, heldout_psnr, render_views, train_splat

    rng = np.random.default_rng(1)
    truth = room_scene(0.08, rng)
    width, height = 96, 64
    poses = np.stack([upright_path(t, 3.0) for t in np.linspace(0, 3.0, 24)])
    viewmats = torch.from_numpy(np.linalg.inv(poses)).float()
    Ks = torch.from_numpy(np.stack([gsplat_K(Intrinsics.from_fov(width, height, 80))] * 24)).float()
    views = Views(render_views(truth, viewmats, Ks, width, height), viewmats, Ks)
    train, test = views.subset(list(range(0, 24, 2))), views.subset(list(range(1, 24, 2)))
    surface = truth["means"].numpy()
    points = surface[rng.choice(len(surface), 2000, replace=False)] + rng.normal(0, 0.01, (2000, 3))
    config = SplatConfig(
        steps=steps,
        init_opacity=0.5,
        grow_grad2d=0.001,
        max_gaussians=12000,
        refine_start=steps // 10,
        refine_stop=int(steps * 0.7),
        refine_every=max(steps // 20, 10),
        reset_every=10 * steps,
    )
    started = time.perf_counter()
    params = train_splat(train, points, None, config)
    seconds = time.perf_counter() - started
    return [
        (
            f"splat training on CPU ({width}x{height}, 1 thread)",
            f"{seconds / steps * 1e3:.0f} s per 1k steps",
        ),
        (
            f"held-out PSNR after {steps} steps ({len(params['means'])} Gaussians)",
            f"{heldout_psnr(params, test):.1f} dB",
        ),
    ]


def main(quick: bool = False) -> list[tuple[str, str]]:
    rows = _compositor_rows(*((2000, 80, 60, 3) if quick else (20000, 160, 120, 5)))
    return rows + _training_rows(60 if quick else 300)
