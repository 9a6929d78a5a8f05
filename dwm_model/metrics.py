"""Video metrics as the official DWM evaluation (`tests/compute_metrics.py` of snuvclab/dwm).

- PSNR: torchmetrics `PeakSignalNoiseRatio(data_range=1)` over the whole clip, i.e. one MSE
  pooled over every pixel of every frame, not a mean of per-frame PSNRs.
- SSIM: torchmetrics `StructuralSimilarityIndexMeasure(data_range=1)` (Gaussian 11, sigma 1.5),
  the mean over frames; implementations disagree by hundredths, so only this one is used.
- LPIPS: `lpips.LPIPS(net="vgg")` with the linear heads shipped in the `lpips` wheel and the
  torchvision VGG16 ImageNet backbone from the user's local file; mean over frames.
- DreamSim: the ensemble (see `dwm_model.dreamsim`); mean over frames.

Frames are (F, H, W, 3) uint8, as decoded from the mp4 files. Nothing is downloaded.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import DwmDataError, MissingAssetError, MissingExtraError
from dwm_data.extras import require

METRICS = ("psnr", "ssim", "lpips", "dreamsim")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "dreamsim": False}
# torchvision's VGG16 `features`: 3x3 convolutions (with ReLU) and 2x2 max pools ("M").
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M")
VGG16_LAYERS += (512, 512, 512, "M")
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's name for the ImageNet weights


def _unit(frames: np.ndarray):
    """(F, H, W, 3) uint8 to (F, 3, H, W) float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def chunks(a: np.ndarray, b: np.ndarray, frames: int = 8):
    """Both clips as (n, 3, H, W) float pairs in [0, 1], `frames` at a time: a 49-frame clip at
    720x480 as one float batch would take gigabytes in SSIM's intermediates."""
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise DwmDataError(
            f"videos to compare must be the same (F, H, W, 3); got {a.shape}, {b.shape}"
        )
    for i in range(0, len(a), frames):
        yield _unit(a[i : i + frames]), _unit(b[i : i + frames])


def _accumulate(metric, a: np.ndarray, b: np.ndarray) -> float:
    """A torchmetrics metric over a clip in chunks; its state sums over them, so the result is
    the one of the whole clip at once."""
    for x, y in chunks(a, b):
        metric.update(x, y)
    return float(metric.compute())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the whole clip (one pooled MSE); identical clips give inf."""
    from torchmetrics.image import PeakSignalNoiseRatio

    return _accumulate(PeakSignalNoiseRatio(data_range=1.0), a, b)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Gaussian-window SSIM, the mean over all frames."""
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    if a.ndim == 4 and min(a.shape[1:3]) < 11:
        raise DwmDataError(f"frames of {a.shape[2]}x{a.shape[1]} are smaller than the SSIM window")
    return _accumulate(StructuralSimilarityIndexMeasure(data_range=1.0), a, b)


def vgg16_features():
    """torchvision's `vgg16().features` layer for layer, so its weight file's keys fit."""
    import torch

    layers: list[torch.nn.Module] = []
    channels = 3
    for item in VGG16_LAYERS:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [torch.nn.Conv2d(channels, item, 3, padding=1), torch.nn.ReLU(inplace=True)]
            channels = item
    return torch.nn.Sequential(*layers)


def _import_lpips():
    """`lpips` imports torchvision only to build its backbones, and no torchvision wheel on PyPI
    loads beside the CPU torch build. Without one, lpips gets torchvision's VGG16 layout for that
    one import (random weights: `Lpips` loads the real ones from the user's file)."""
    if "lpips" in sys.modules:
        return sys.modules["lpips"]
    layout = None
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        layout = types.ModuleType("torchvision")
        layout.models = types.SimpleNamespace(vgg16=_random_vgg16)  # type: ignore[attr-defined]
        sys.modules["torchvision"] = layout
    try:
        import lpips
    except ImportError as exc:
        raise MissingExtraError(
            f"'lpips' is needed for LPIPS but cannot be imported ({exc}); install it with: "
            "pip install --no-deps lpips==0.1.4 (its torchvision requirement is not needed)"
        ) from exc
    finally:
        if layout is not None and sys.modules.get("torchvision") is layout:
            del sys.modules["torchvision"]
    return lpips


def _random_vgg16(pretrained: bool = False, **_: Any):
    if pretrained:
        raise DwmDataError("the VGG16 backbone is loaded from a local file, never downloaded")
    return types.SimpleNamespace(features=vgg16_features())


class Lpips:
    """LPIPS (VGG) with lpips' own class and linear heads, the backbone from a local file."""

    def __init__(self, backbone: Path, device: str = "cpu"):
        import torch

        if not backbone.is_file():
            raise MissingAssetError(
                "LPIPS VGG16 backbone",
                str(backbone),
                f"copy torchvision's {VGG16_FILE} there (or set eval.lpips_backbone)",
            )
        lpips = _import_lpips()
        model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
        weights = torch.load(backbone, map_location="cpu", weights_only=True)
        wanted = {}
        for name in model.net.state_dict():
            source = re.sub(r"^slice\d+\.", "features.", name)
            if source not in weights:
                raise DwmDataError(f"{backbone} is not a torchvision VGG16 file (no {source})")
            wanted[name] = weights[source]
        model.net.load_state_dict(wanted)
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = device

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        """The mean over frames; lpips takes [-1, 1]."""
        import torch

        scores = []
        with torch.no_grad():
            for x, y in chunks(a, b):
                pair = (t.to(self.device) * 2 - 1 for t in (x, y))
                scores.append(self.model(*pair).flatten().cpu())
        return float(torch.cat(scores).mean())


class Scorer:
    """The chosen metrics with their models loaded once; a metric whose weights are missing is
    left out, and `missing` holds the one line that says what and where."""

    def __init__(self, names: tuple[str, ...], lpips_backbone: Path, dreamsim_folder: Path):
        unknown = sorted(set(names) - set(METRICS))
        if unknown:
            raise DwmDataError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}"
            )
        self.names = [n for n in METRICS if n in names]
        self.missing: dict[str, str] = {}
        self.models: dict[str, Any] = {}
        require("torchmetrics", "eval")
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        for name, load in (
            ("lpips", lambda: Lpips(lpips_backbone, device)),
            ("dreamsim", lambda: _dreamsim(dreamsim_folder, device)),
        ):
            if name not in self.names:
                continue
            try:
                self.models[name] = load()
            except MissingAssetError as exc:
                self.missing[name] = str(exc)
                self.names.remove(name)

    def __call__(self, generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        plain = {"psnr": psnr, "ssim": ssim}
        return {
            name: (plain.get(name) or self.models[name])(generated, truth) for name in self.names
        }


def _dreamsim(folder: Path, device: str):
    from dwm_model.dreamsim import DreamSim

    return DreamSim(folder, device)
