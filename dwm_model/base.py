"""The base model's parts, loaded from a local diffusers-layout folder (nothing is downloaded).

The folder is CogVideoX-Fun-V1.1-5b-InP as released (`transformer/`, `vae/`, `text_encoder/`,
`tokenizer/`, `scheduler/`) or a tiny random one written by `dwm_model.tiny` in the same layout,
so tests exercise the loading code the real model goes through. The VAE and text encoder load
lazily: a run on cached latents never pays for T5-XXL.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from dwm_data.errors import MissingAssetError
from dwm_data.extras import require

PARTS = {
    "transformer": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "tokenizer_config.json",
    "scheduler": "scheduler_config.json",
}


def check_base_folder(folder: Path) -> None:
    """One clear line naming the missing part, before anything heavy is imported."""
    missing = [
        f"{part}/{name}" for part, name in PARTS.items() if not (folder / part / name).is_file()
    ]
    if missing:
        raise MissingAssetError(
            f"base model ({', '.join(missing)})",
            str(folder),
            "download alibaba-pai/CogVideoX-Fun-V1.1-5b-InP (diffusers layout) to that folder, "
            "or set train.base_model: tiny",
        )


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
        diffusers = require("diffusers", "train")
        vae = diffusers.AutoencoderKLCogVideoX.from_pretrained(self.folder, subfolder="vae")
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
        transformers = require("transformers", "train")
        return transformers.AutoTokenizer.from_pretrained(self.folder / "tokenizer")

    @cached_property
    def scheduler(self):
        diffusers = require("diffusers", "train")
        return diffusers.CogVideoXDDIMScheduler.from_pretrained(self.folder, subfolder="scheduler")

    @cached_property
    def vae_config(self) -> dict[str, Any]:
        import json

        return json.loads((self.folder / "vae" / "config.json").read_text())

    @property
    def scaling_factor(self) -> float:
        return float(self.vae_config["scaling_factor"])

    def encode_prompts(self, prompts: list[str], max_length: int):
        """T5 embeddings as the official trainer makes them: padded to max_length, no mask."""
        import torch

        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
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
    """The base-model folder for a recipe's `base_model`: a path, or "tiny" for the random CPU
    model, written once per geometry under $DWM_MODEL_CACHE (default ~/.cache/dwm-data)."""
    import os
    import shutil
    import tempfile

    if name != "tiny":
        return Path(name).expanduser().resolve()
    root = Path(os.environ.get("DWM_MODEL_CACHE", Path.home() / ".cache" / "dwm-data"))
    folder = root / f"tiny-{width}x{height}x{frames}"
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        from dwm_model.tiny import create_tiny_base

        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=root, prefix=".tiny-"))
        create_tiny_base(scratch, width, height, frames)
        try:
            scratch.rename(folder)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(scratch, ignore_errors=True)
    return folder
