"""The splat training knobs (the recipe's `aria.splat`), kept apart from the torch code that
reads them so that checking a recipe imports no torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SplatConfig(BaseModel):
    """Training knobs; the step counts of the strategy are absolute, like gsplat's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = 3000
    sh_degree: int = 0
    init_opacity: float = 0.1
    lr_means: float = 1.6e-4  # times the scene scale
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 2e-4
    prune_opa: float = 0.005
    # Stop densifying once there are this many Gaussians (None: gsplat's schedule alone). Each
    # step costs in proportion to the Gaussians' pixel footprint, so a CPU run needs a budget.
    max_gaussians: int | None = None
    seed: int = 0
    # torch intra-op threads while training/rendering. Runs parallelise over worker processes;
    # more threads on top oversubscribe the cores (10x slower per step measured on a busy
    # 2-core machine), and the per-step tensors are too small to gain much from them anyway.
    threads: int = 1
