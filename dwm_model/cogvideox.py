"""CogVideoX-Fun-V1.1-5b-InP behind the backbone seam (snuvclab/dwm `training/cogvideox/`).

The parts load as `dwm_model.base.Base` loads them and the model arithmetic is `dwm_model.model`'s;
this class only binds them to the seam: v-prediction on `[noisy | mask x 0.7 | static | hand]`
[B, F, C, h, w] latents, DDIM sampling, LoRA on to_q/k/v/out.0 in the official two files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_model import model as m
from dwm_model.base import Base, _missing, latents_from_moments


class CogVideoX(Base):
    kind = "cogvideox"
    lora_targets = ("to_k", "to_q", "to_v", "to_out.0")
    trainable_patterns = ("patch_embed.proj",)
    text_length = 226  # T5 v1.1 XXL, max_length 226
    negative_prompt = ""  # only the prompt changes between the guidance branches
    HOW_TO_GET = (
        "download alibaba-pai/CogVideoX-Fun-V1.1-5b-InP (diffusers layout) to that folder, "
        "or set train.base_model: tiny"
    )

    @staticmethod
    def holds(folder: Path) -> bool:
        """The fallback layout (diffusers' folders), tried last."""
        return True

    @staticmethod
    def missing(folder: Path) -> list[str]:
        return _missing(folder)

    @staticmethod
    def identity(folder: Path) -> bytes:
        """The configs of the VAE, text encoder and tokenizer, and the tokenizer's vocabulary
        (the release's ids come from `spiece.model`, under 1 MB)."""
        parts = ("vae", "text_encoder", "tokenizer")
        configs = [p for part in parts for p in sorted((folder / part).glob("*.json"))]
        vocabulary = sorted((folder / "tokenizer").glob("*.model"))
        return b"".join(p.read_bytes() for p in configs + vocabulary)

    def world_transformer(self, condition_channels: int):
        return m.load_world_model(self, condition_channels)

    def latents(self, moments, generator=None, mode: bool = False):
        return latents_from_moments(moments, self.scaling_factor, generator, mode)

    def training_example(self, z0, generator):
        """t uniform in [0, 1000), z_t = add_noise, target the velocity: the MSE on it is
        elementwise the official (1/(1-a_t)) x0 loss without its blow-up near t = 0."""
        import torch

        scheduler = self.scheduler
        steps = scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (z0.shape[0],), generator=generator).to(self.device)
        noise = torch.randn(z0.shape, generator=generator).to(self.device)
        return scheduler.add_noise(z0, noise, t), t, scheduler.get_velocity(z0, noise, t)

    def predict(
        self, transformer, noisy, static, hand, prompt_embeds, timesteps, runner=None, mask=None
    ):
        return m.predict(
            transformer, noisy, static, hand, prompt_embeds, timesteps, self.scaling_factor,
            runner, mask,
        )  # fmt: skip

    def inference_mask(self, video_shape: tuple[int, ...], latent_shape):
        import torch

        frames, height, width, _ = video_shape
        zeros = torch.zeros((1, 1, frames, height, width), device=self.device)
        _, latent_frames, _, latent_height, latent_width = latent_shape
        return m.inpaint_mask(
            zeros, latent_frames, latent_height, latent_width, self.scaling_factor
        )

    def denoise(self, latents, steps: int, model, sampler: str = ""):
        if sampler not in ("", "ddim"):
            raise DwmDataError(f"sampler '{sampler}' is not a CogVideoX sampler (ddim)")
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=self.device)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            output = model(scheduler.scale_model_input(latents, t), t)
            latents = scheduler.step(output, t, latents, return_dict=False)[0]
        return latents

    def add_lora(self, transformer, rank: int, alpha: int, targets, trainable) -> list:
        return m.add_lora(transformer, rank, alpha, tuple(targets), tuple(trainable))

    def save_weights(self, transformer, folder: Path, record: dict[str, Any]) -> None:
        m.save_weights(transformer, folder, record)

    def load_weights(self, transformer, folder: Path) -> None:
        m.load_weights(transformer, folder)

    def adapter_settings(self, folder: Path) -> dict[str, Any]:
        return m.adapter_settings(folder)
