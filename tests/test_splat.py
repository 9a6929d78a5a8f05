"""Splat parameters, `.ply` files and the training loop's opacity-reset workaround."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dwm_data.cameras import Intrinsics  # noqa: E402
from dwm_data.splat.model import init_params  # noqa: E402
from dwm_data.splat.ply import load_ply, save_ply  # noqa: E402
from dwm_data.splat.render import gsplat_K, render  # noqa: E402
from dwm_data.splat.train import SplatConfig, Views, _opacity_reset_is_broken, psnr, train_splat  # noqa: E402


def test_ply_round_trip(tmp_path):
    points = np.random.default_rng(0).normal(size=(50, 3))
    params = init_params(points, np.random.default_rng(1).random((50, 3)), sh_degree=2)
    params["shN"] = torch.randn_like(params["shN"])
    save_ply(params, tmp_path / "splat.ply")
    text = (tmp_path / "splat.ply").read_bytes()[:1200].decode("ascii", "replace")
    assert "element vertex 50" in text and "property float f_rest_23" in text
    back = load_ply(tmp_path / "splat.ply")
    assert set(back) == set(params)
    for key in params:
        assert torch.allclose(back[key], params[key].float()), key


def test_gsplat_K_shifts_principal_point_half_a_pixel():
    intr = Intrinsics.from_fov(64, 48, 90)  # centred: cx = 31.5 in our convention
    K = gsplat_K(intr)
    assert K[0, 2] == 32.0 and K[1, 2] == 24.0


def test_centred_gaussian_lands_on_image_centre():
    """A Gaussian on the optical axis must render symmetric about the image centre."""
    params = init_params(np.array([[0.0, 0.0, 2.0]]), np.array([[1.0, 1.0, 1.0]]), 0)
    params["scales"] = torch.full((1, 3), math.log(0.1))
    params["opacities"] = torch.full((1,), 5.0)
    intr = Intrinsics.from_fov(32, 24, 60)
    out = render(
        params, torch.eye(4)[None], torch.tensor(gsplat_K(intr), dtype=torch.float32)[None], 32, 24
    )
    image = out.colors[0, ..., 0]
    assert torch.allclose(image, image.flip(0), atol=1e-5)
    assert torch.allclose(image, image.flip(1), atol=1e-5)


def test_opacity_reset_runs_despite_gsplat_defect():
    """gsplat 1.5.3 never resets; our loop must, at step `reset_every`."""
    assert _opacity_reset_is_broken()  # the installed gsplat has the defect we work around
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, (30, 3)) + [0, 0, 3]
    intr = Intrinsics.from_fov(16, 12, 60)
    views = Views(
        images=torch.rand(2, 12, 16, 3),
        viewmats=torch.eye(4).repeat(2, 1, 1),
        Ks=torch.tensor(gsplat_K(intr), dtype=torch.float32).repeat(2, 1, 1),
    )
    config = SplatConfig(
        steps=6,
        init_opacity=0.9,
        lr_opacities=0.0,
        refine_start=100,
        refine_stop=100,
        reset_every=5,
    )
    params = train_splat(views, points, None, config)
    assert torch.sigmoid(params["opacities"]).max() <= config.prune_opa * 2 + 1e-6


def test_psnr_masks_pixels():
    target = torch.zeros(4, 4, 3)
    image = target.clone()
    image[0, 0] = 1.0
    mask = torch.ones(4, 4, dtype=torch.bool)
    assert psnr(image, target) == pytest.approx(10 * math.log10(16))
    mask[0, 0] = False
    assert psnr(image, target, mask) == pytest.approx(120.0)
