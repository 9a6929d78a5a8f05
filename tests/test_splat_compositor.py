"""The CPU compositor against a brute-force reference, and its gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dwm_data.splat.compositor import composite, reference_composite  # noqa: E402


def projected(cams: int = 2, count: int = 60, width: int = 24, height: int = 18, seed: int = 0):
    """Random projected Gaussians, some overlapping, some off-screen, some culled."""
    gen = torch.Generator().manual_seed(seed)
    means2d = torch.rand(cams, count, 2, generator=gen, dtype=torch.float64)
    means2d = means2d * torch.tensor([width + 8.0, height + 8.0], dtype=torch.float64) - 4.0
    sx = 0.8 + 3 * torch.rand(cams, count, generator=gen, dtype=torch.float64)
    sy = 0.8 + 3 * torch.rand(cams, count, generator=gen, dtype=torch.float64)
    rho = 0.8 * (torch.rand(cams, count, generator=gen, dtype=torch.float64) - 0.5)
    cov_xy = rho * sx * sy
    det = sx**2 * sy**2 - cov_xy**2
    conics = torch.stack([sy**2 / det, -cov_xy / det, sx**2 / det], dim=-1)
    radii = torch.stack([torch.ceil(3.33 * sx), torch.ceil(3.33 * sy)], dim=-1).int()
    radii[:, :5] = 0  # culled by the projection
    opacities = 0.05 + 0.9 * torch.rand(count, generator=gen, dtype=torch.float64)
    colors = torch.rand(cams, count, 3, generator=gen, dtype=torch.float64)
    depths = 1 + 5 * torch.rand(cams, count, generator=gen, dtype=torch.float64)
    return means2d, conics, opacities, colors, depths, radii, width, height


def test_matches_brute_force_reference():
    args = projected()
    background = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    image, alpha = composite(*args, background=background)
    ref_image, ref_alpha = reference_composite(*args, background=background)
    assert image.shape == (2, 18, 24, 3) and alpha.shape == (2, 18, 24, 1)
    assert (alpha > 0.5).float().mean() > 0.3  # the scene actually covers the image
    assert torch.allclose(image, ref_image, atol=1e-5, rtol=0)
    assert torch.allclose(alpha, ref_alpha, atol=1e-5, rtol=0)


def test_opaque_stack_stops_early_like_cuda():
    """Behind nearly opaque layers the CUDA kernel stops at T <= 1e-4; so must we, exactly."""
    means2d, conics, opacities, colors, depths, radii, width, height = projected(count=40, seed=4)
    means2d[:, :20] = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    conics[:, :20] = torch.tensor([0.002, 0.0, 0.002], dtype=torch.float64)  # wide, flat
    radii[:, :20] = 60
    opacities[:20] = 0.97
    image, alpha = composite(means2d, conics, opacities, colors, depths, radii, width, height)
    ref_image, ref_alpha = reference_composite(
        means2d, conics, opacities, colors, depths, radii, width, height
    )
    assert (1 - alpha).min() < 1e-3  # some pixels did reach the stop
    assert torch.allclose(image, ref_image, atol=1e-5, rtol=0)
    assert torch.allclose(alpha, ref_alpha, atol=1e-5, rtol=0)


def test_float32_inputs_match_reference():
    args = [
        a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in projected(seed=3)
    ]
    image, _ = composite(*args)
    ref_image, _ = reference_composite(*args)
    assert image.dtype == torch.float32
    assert torch.allclose(image.double(), ref_image, atol=1e-5, rtol=0)


def test_gradients_match_finite_differences():
    means2d, conics, opacities, colors, depths, radii, width, height = projected(
        cams=1, count=12, width=10, height=8, seed=1
    )
    means2d.requires_grad_(True)
    conics.requires_grad_(True)
    opacities.requires_grad_(True)
    colors.requires_grad_(True)

    def run(m, c, o, k):
        image, alpha = composite(m, c, o, k, depths, radii, width, height)
        return image, alpha

    assert torch.autograd.gradcheck(run, (means2d, conics, opacities, colors), eps=1e-6, atol=1e-5)


def test_gradients_match_reference_autograd():
    means2d, conics, opacities, colors, depths, radii, width, height = projected(
        cams=1, count=20, width=16, height=12, seed=2
    )
    weights = torch.rand(1, height, width, 3, dtype=torch.float64)
    grads = []
    for fn in (composite, reference_composite):
        leaves = [t.clone().requires_grad_(True) for t in (means2d, conics, opacities, colors)]
        image, _ = fn(*leaves, depths, radii, width, height)
        (image * weights).sum().backward()
        grads.append([leaf.grad for leaf in leaves])
    for ours, ref in zip(*grads, strict=True):
        assert torch.allclose(ours, ref, atol=1e-6)


def test_empty_scene_is_background():
    means2d, conics, opacities, colors, depths, radii, width, height = projected(count=6)
    radii.zero_()
    background = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    image, alpha = composite(
        means2d, conics, opacities, colors, depths, radii, width, height, background
    )
    assert torch.equal(image, background.expand_as(image))
    assert alpha.abs().max() == 0
