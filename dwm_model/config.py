"""Typed `train:`, `sample:` and `eval:` recipe sections and the geometry rules of the model.

The defaults are the official DWM CogVideoX recipe (snuvclab/dwm, `dwm_cogvideox_5b_lora.yaml`);
`recipes/tiny.yaml` shrinks them for CPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from dwm_data.errors import DwmDataError

# The VAE compresses time by 4 and space by 8, and the transformer patches are 2x2 latents.
TEMPORAL_COMPRESSION = 4
SIZE_MULTIPLE = 16


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainConfig(Section):
    # A local base-model folder as downloaded: CogVideoX-Fun-V1.1-5b-InP (diffusers layout) or
    # Wan2.1-Fun-InP (its release layout; recipes/dwm-wan.yaml), a relative path taken from the
    # folder the command runs in; or "tiny" / "tiny-wan" for a random CPU model.
    base_model: str = "models/CogVideoX-Fun-V1.1-5b-InP"
    condition_channels: int = 16
    lora_rank: int = 64
    lora_alpha: int = 64
    lora_targets: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    trainable_patterns: tuple[str, ...] = ("patch_embed.proj",)
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lr_schedule: str = "cosine_with_restarts"
    warmup_steps: int = 100
    max_steps: int = 15000
    batch_size: int = 7
    gradient_accumulation: int = 2
    gradient_checkpointing: bool = True
    bf16: bool = True  # on GPU only; CPU trains in float32
    seed: int = 42
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    num_workers: int = 4
    shuffle_buffer: int = 100
    hand_dropout: float = 0.0
    prompt_dropout: float = 0.0
    max_text_length: int = 226
    log_every: int = 10
    # CPU threads for torch (0: torch's default). Small models run several times faster on one
    # thread when the cores are shared: idle OpenMP threads spin against the other processes.
    threads: int = 0


# "" is the base's official sampler (CogVideoX: DDIM; Wan: flow-matching Euler); Wan also runs
# "unipc" (diffusers' UniPC in flow mode).
Sampler = Literal["", "ddim", "euler", "unipc"]


class SampleConfig(Section):
    steps: int = 50
    guidance: float = 6.0
    seed: int = 42
    sampler: Sampler = ""


class EvalConfig(Section):
    steps: int = 50
    guidance: float = 6.0
    seed: int = 42
    sampler: Sampler = ""
    limit: int = 0  # 0: every sample of the shards
    # Predictions per clip, with seeds seed, seed+1, ...; their scores are averaged (the paper: 3).
    seeds: int = 1
    metrics: tuple[str, ...] = ("psnr", "ssim", "lpips", "dreamsim")
    # The metric networks' local weights (relative paths: to the folder eval runs in). lpips ships
    # its linear heads; the VGG16 backbone is torchvision's ImageNet file.
    lpips_backbone: str = "~/.cache/torch/hub/checkpoints/vgg16-397923af.pth"
    # DreamSim's unzipped ensemble checkpoint (dreamsim_ensemble_checkpoint.zip, as its cache_dir).
    dreamsim_folder: str = "models/dreamsim"


def check_geometry(frames: int, width: int, height: int) -> None:
    """Refuse clips the model would silently mangle: the VAE floors frame counts that are not
    4k+1 and the patch grid drops rows and columns that are not multiples of 16."""
    if frames < 1 or (frames - 1) % TEMPORAL_COMPRESSION:
        raise DwmDataError(f"frame count {frames} is not 4k+1 (e.g. 9, 13, 49)")
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise DwmDataError(f"size {width}x{height} is not a multiple of {SIZE_MULTIPLE}")
