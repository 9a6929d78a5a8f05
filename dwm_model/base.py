"""The base model's parts, loaded from a local diffusers-layout folder (nothing is downloaded).

The folder is CogVideoX-Fun-V1.1-5b-InP as released (`transformer/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`) or a tiny random one written by `dwm_model.tiny` with the same file
traits, so tests exercise the loading code the real model goes through. The VAE and text encoder
load lazily: a run on cached latents never pays for T5-XXL.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.extras import require

log = logging.getLogger(__name__)

PARTS = {
    "transformer": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "spiece.model",  # T5's SentencePiece form; the release has no tokenizer.json
    "scheduler": "scheduler_config.json",
}
# The noise schedule the base model was trained with. A file without the shift gets none: the
# official trainer's DDPMScheduler has no shift, while diffusers' CogVideoX schedulers default to 3.
PREDICTION_TYPE = "v_prediction"
NO_SHIFT = 1.0


def check_base_folder(folder: Path) -> None:
    """One clear line naming the missing part, before anything heavy is imported."""
    missing = _missing(folder)
    if missing:
        raise MissingAssetError(
            f"base model ({', '.join(missing)})",
            str(folder),
            "download alibaba-pai/CogVideoX-Fun-V1.1-5b-InP (diffusers layout) to that folder, "
            "or set train.base_model: tiny",
        )


def _missing(folder: Path) -> list[str]:
    return [
        f"{part}/{name}" for part, name in PARTS.items() if not (folder / part / name).is_file()
    ]


class Base:
    """The frozen parts of the base model on one device, in one compute dtype."""

    def __init__(self, folder: Path, device: str = "cpu", dtype: Any = None):
        torch = require("torch", "train")
        check_base_folder(folder)
        _quiet_loading()
        self.folder = folder
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32

    def load_transformer(self):
        diffusers = require("diffusers", "train")
        model = diffusers.CogVideoXTransformer3DModel.from_pretrained(
            self.folder, subfolder="transformer", torch_dtype=self.dtype
        )
        return model.to(self.device)

    @cached_property
    def vae(self):
        """Sliced (one video of the batch at a time) and tiled (overlapping spatial tiles): a
        49x480x720 encode or decode otherwise holds tens of GB of activations."""
        diffusers = require("diffusers", "train")
        vae = diffusers.AutoencoderKLCogVideoX.from_pretrained(self.folder, subfolder="vae")
        vae.enable_slicing()
        vae.enable_tiling()
        return vae.to(self.device).eval().requires_grad_(False)  # float32: force_upcast

    @cached_property
    def text_encoder(self):
        transformers = require("transformers", "train")
        model = transformers.T5EncoderModel.from_pretrained(
            self.folder / "text_encoder", torch_dtype=self.dtype
        )
        return model.to(self.device).eval().requires_grad_(False)

    @cached_property
    def tokenizer(self):
        from dwm_model.tokenizer import T5Tokenizer

        return T5Tokenizer(self.folder / "tokenizer")

    @cached_property
    def scheduler(self):
        return load_scheduler(self.folder / "scheduler")

    @cached_property
    def vae_config(self) -> dict[str, Any]:
        return json.loads((self.folder / "vae" / "config.json").read_text())

    @property
    def scaling_factor(self) -> float:
        """From the file, never the class default (1.15258426, the 2B's; the 5B's is 0.7)."""
        if "scaling_factor" not in self.vae_config:
            raise DwmDataError(f"{self.folder}/vae/config.json has no scaling_factor")
        return float(self.vae_config["scaling_factor"])

    def encode_prompts(self, prompts: list[str], max_length: int):
        """T5 embeddings as the official trainer makes them: padded to max_length, no mask."""
        import torch

        ids = torch.tensor(self.tokenizer(prompts, max_length), device=self.device)
        with torch.no_grad():
            hidden = self.text_encoder(ids)[0]
        return hidden.to(self.dtype)

    def encode_moments(self, videos):
        """VAE moments (mean | logvar) of [B, C, F, H, W] videos in [-1, 1]; cached as is, so
        every epoch draws a fresh latent sample as the official cache does."""
        import torch

        with torch.no_grad():
            return self.vae.encode(videos.to(self.device, torch.float32)).latent_dist.parameters

    def decode_latents(self, latents):
        """[B, F, C, h, w] scaled latents to [B, C, F, H, W] videos in [-1, 1]."""
        import torch

        with torch.no_grad():
            scaled = latents.permute(0, 2, 1, 3, 4).to(torch.float32) / self.scaling_factor
            return self.vae.decode(scaled).sample.clamp(-1, 1)


def load_scheduler(folder: Path):
    """The scheduler class the file names, checked against the schedule the base model needs:
    v-prediction, and the file's SNR shift (none when the file has no such key)."""
    import inspect

    diffusers = require("diffusers", "train")
    config = json.loads((folder / "scheduler_config.json").read_text())
    name = config.get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.SchedulerMixin):
        raise DwmDataError(f"{folder}/scheduler_config.json names no diffusers scheduler: {name!r}")
    defaults = {key: p.default for key, p in inspect.signature(cls.__init__).parameters.items()}
    overrides = {}
    if "prediction_type" not in config:
        overrides["prediction_type"] = PREDICTION_TYPE
        log.warning(
            "%s/scheduler_config.json has no prediction_type: using %s, not %s's default %s",
            folder, PREDICTION_TYPE, name, defaults.get("prediction_type"),
        )  # fmt: skip
    elif config["prediction_type"] != PREDICTION_TYPE:
        raise DwmDataError(
            f"{folder}/scheduler_config.json: prediction_type {config['prediction_type']!r}, "
            f"but the CogVideoX-Fun base model and our objective are {PREDICTION_TYPE}"
        )
    shift = config.get("snr_shift_scale")
    if "snr_shift_scale" in defaults and shift is None:
        overrides["snr_shift_scale"] = NO_SHIFT
        log.warning(
            "%s/scheduler_config.json has no snr_shift_scale: using %s (no shift, as the official "
            "trainer's DDPMScheduler), not %s's default %s",
            folder, NO_SHIFT, name, defaults["snr_shift_scale"],
        )  # fmt: skip
    elif "snr_shift_scale" not in defaults and shift not in (None, NO_SHIFT):
        raise DwmDataError(
            f"{folder}/scheduler_config.json: {name} would ignore the file's snr_shift_scale {shift}"
        )
    return cls.from_pretrained(folder, **overrides)


def _quiet_loading() -> None:
    """Our progress bar is the one that matters; the libraries' per-load bars only add noise."""
    require("diffusers", "train").utils.logging.disable_progress_bar()
    require("transformers", "train").utils.logging.disable_progress_bar()


def latents_from_moments(moments, scaling: float, generator=None, mode: bool = False):
    """[B, 2C, F, h, w] moments to [B, F, C, h, w] scaled latents (a sample, or the mean)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    dist = DiagonalGaussianDistribution(moments)
    latents = dist.mode() if mode else dist.sample(generator=generator)
    return (latents * scaling).permute(0, 2, 1, 3, 4).contiguous()


def resolve_base(name: str, width: int, height: int, frames: int) -> Path:
    """The base-model folder for a recipe's `base_model`: a path, or "tiny" / "tiny-wan" for the
    random CPU models (CogVideoX, Wan), written once per geometry under $DWM_MODEL_CACHE
    (default ~/.cache/dwm-data)."""
    import os
    import shutil
    import tempfile

    from dwm_model.backbone import base_kind

    if name not in TINY:
        return Path(name).expanduser().resolve()
    root = Path(os.environ.get("DWM_MODEL_CACHE", Path.home() / ".cache" / "dwm-data"))
    folder = root / f"{name}-{width}x{height}x{frames}"
    kind = "wan" if name == "tiny-wan" else "cogvideox"
    incomplete = not folder.is_dir() or base_kind(folder) != kind or _tiny_missing(folder, kind)
    if incomplete:
        import importlib

        module, function = TINY[name].split(":")
        create = getattr(importlib.import_module(module), function)
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=root, prefix=".tiny-"))
        create(scratch, width, height, frames)
        if folder.exists():  # written by an earlier dwm_model.tiny
            shutil.rmtree(folder, ignore_errors=True)
        try:
            scratch.rename(folder)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(scratch, ignore_errors=True)
    return folder


TINY = {
    "tiny": "dwm_model.tiny:create_tiny_base",
    "tiny-wan": "dwm_model.tiny_wan:create_tiny_wan_base",
}


def _tiny_missing(folder: Path, kind: str) -> list[str]:
    if kind == "cogvideox":
        return _missing(folder)
    from dwm_model.wan import Wan

    return Wan.missing(folder)
