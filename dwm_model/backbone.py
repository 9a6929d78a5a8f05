"""The one seam between the world model and a base video model.

Train, sample, encode, eval and the latent cache talk to a base only through `Backbone`: a
base is one module (`dwm_model.cogvideox`, `dwm_model.wan`) holding one class with these
methods, so a new base is one new file plus one line in `KINDS` (and a recipe). Latents keep the base's own
layout ([B, F, C, h, w] for CogVideoX, [B, C, F, h, w] for Wan) end to end; only the backbone
looks inside them, the trainer and sampler treat them as opaque tensors with a batch axis first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from dwm_data.errors import MissingAssetError

# module: class, in the order the folder layouts are tried
KINDS = {"wan": "dwm_model.wan:Wan", "cogvideox": "dwm_model.cogvideox:CogVideoX"}


class Backbone(Protocol):
    """What a base model provides; `Any` tensors are torch tensors (imported lazily)."""

    folder: Path
    device: Any
    dtype: Any
    kind: str
    # The official recipe's defaults for this base (the adapter record overrides them).
    lora_targets: tuple[str, ...]
    trainable_patterns: tuple[str, ...]  # regexes of the fully trained layers
    text_length: int
    negative_prompt: str  # the unconditional branch's prompt of the official inference

    HOW_TO_GET: str  # the hint of the one-line error for a missing part

    @staticmethod
    def holds(folder: Path) -> bool:
        """Whether the folder is laid out as this base's release (cheap: files and configs)."""

    @staticmethod
    def missing(folder: Path) -> list[str]:
        """The parts of the release layout a folder lacks."""

    @staticmethod
    def identity(folder: Path) -> bytes:
        """Cheap bytes that change with the VAE or text encoder (the latent cache's key)."""

    def world_transformer(self, condition_channels: int) -> Any:
        """The base transformer widened by the zero-initialised hand channels."""

    def encode_prompts(self, prompts: list[str], max_length: int) -> Any: ...

    def encode_moments(self, videos: Any) -> Any:
        """VAE moments (mean | logvar) of [B, 3, F, H, W] videos in [-1, 1]."""

    def latents(self, moments: Any, generator: Any = None, mode: bool = False) -> Any:
        """Normalised model-layout latents: a sample of the moments (or their mean)."""

    def decode_latents(self, latents: Any) -> Any:
        """Model-layout latents to [B, 3, F, H, W] videos in [-1, 1]."""

    def training_example(self, z0: Any, generator: Any) -> tuple[Any, Any, Any]:
        """(noisy latents, timesteps, regression target) for one batch of clean latents."""

    def predict(
        self, transformer, noisy, static, hand, prompt_embeds, timesteps, runner=None, mask=None
    ) -> Any:
        """The transformer's output (same space as the training target) under the conditions."""

    def inference_mask(self, video_shape: tuple[int, ...], latent_shape: Any) -> Any:
        """The InP mask condition for an all-known static video, as the official inference."""

    def denoise(self, latents: Any, steps: int, model: Any, sampler: str = "") -> Any:
        """Run a sampler of the base ("": its official one) from initial noise; `model(latents,
        t)` is the guided output."""

    def save_weights(self, transformer, folder: Path, record: dict[str, Any]) -> None: ...

    def load_weights(self, transformer, folder: Path) -> None: ...

    def adapter_settings(self, folder: Path) -> dict[str, Any]: ...

    def add_lora(self, transformer, rank: int, alpha: int, targets, trainable) -> list: ...


def _class(kind: str):
    import importlib

    module, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def base_kind(folder: Path) -> str:
    """Which base a folder holds: the first kind of `KINDS` whose class `holds` its layout
    (CogVideoX, last, takes any folder; `check_base` then names what it lacks)."""
    return next(kind for kind in KINDS if _class(kind).holds(folder))


def check_base(folder: Path) -> None:
    """One clear line naming the missing parts of the base folder, before anything heavy."""
    cls = _class(base_kind(folder))
    missing = cls.missing(folder)
    if missing:
        raise MissingAssetError(f"base model ({', '.join(missing)})", str(folder), cls.HOW_TO_GET)


def open_backbone(folder: Path, device: str = "cpu", dtype: Any = None) -> Backbone:
    """The backbone of the base model in `folder` on one device, in one compute dtype."""
    return _class(base_kind(folder))(folder, device, dtype)


def identity(folder: Path) -> bytes:
    """Bytes that change with the VAE or text encoder of the base (what a latent cache depends
    on), cheap to read even for a 14B release."""
    return _class(base_kind(folder)).identity(folder)
