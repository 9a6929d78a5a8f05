"""The Dexterous World Model: CogVideoX-Fun InP widened by 16 hand-latent input channels, plus LoRA.

The transformer input is `[noisy 16 | mask 1 | static 16 | hand 16]` on the channel axis of
[B, F, C, h, w] latents, as in snuvclab/dwm: channels 0-32 are the base InP input with the static
video as a fully known "masked video" (mask = ones x VAE scaling), the hand channels are new and
start at zero so the widened model begins as the base model. Weights are saved as the official
trainer saves them (`pytorch_lora_weights.safetensors`: the unprefixed keys of
`get_peft_model_state_dict` in a plain safetensors file; `non_lora_weights.safetensors`: the full
patch embedding), so each side loads the other's; files with diffusers' `transformer.` prefix
(earlier dwm-data, written by `CogVideoXPipeline.save_lora_weights`) load too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError

LORA_FILE = "pytorch_lora_weights.safetensors"
NON_LORA_FILE = "non_lora_weights.safetensors"
# Our own record of the adapter (the official release has none: rank = alpha = 64 there).
ADAPTER_FILE = "dwm_adapter.json"
LATENT_CHANNELS = 16


def widen_patch_embed(transformer, extra: int) -> None:
    """Append `extra` zero-initialised input channels to the patch embedding (V1.0/1.1 Conv2d)."""
    import torch

    proj = transformer.patch_embed.proj
    if not isinstance(proj, torch.nn.Conv2d):
        raise DwmDataError(
            f"patch embedding is {type(proj).__name__}; only CogVideoX-Fun V1.0/V1.1 (Conv2d) can be widened"
        )
    wider = torch.nn.Conv2d(
        proj.in_channels + extra,
        proj.out_channels,
        kernel_size=proj.kernel_size,
        stride=proj.stride,
        bias=proj.bias is not None,
        device=proj.weight.device,
        dtype=proj.weight.dtype,
    )
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, : proj.in_channels].copy_(proj.weight)
        if proj.bias is not None:
            wider.bias.copy_(proj.bias)
    transformer.patch_embed.proj = wider
    transformer.register_to_config(
        in_channels=proj.in_channels + extra,
        original_in_channels=proj.in_channels,
        condition_channels=extra,
    )


def load_world_model(base, condition_channels: int = 16):
    """The base transformer with the hand channels added (already present in a widened folder)."""
    inp = 2 * LATENT_CHANNELS + 1
    config = json.loads((base.folder / "transformer" / "config.json").read_text())
    have = config["in_channels"]
    if have not in (inp, inp + condition_channels):
        raise DwmDataError(
            f"base transformer takes {have} input channels; expected an InP model ({inp}) "
            f"or a widened one ({inp + condition_channels})"
        )
    transformer = base.load_transformer()
    if have == inp:
        widen_patch_embed(transformer, condition_channels)
    return transformer


def add_lora(
    transformer, rank: int, alpha: int, targets: tuple[str, ...], trainable: tuple[str, ...]
) -> list:
    """Freeze the base, add the peft adapter (B = 0, so an identity at start) and unfreeze the
    fully trained layers; returns the trainable parameters."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(targets))
    )
    for name, param in transformer.named_parameters():
        if "lora" not in name and any(re.search(p, name) for p in trainable):
            param.requires_grad_(True)
    params = [p for p in transformer.parameters() if p.requires_grad]
    for param in params:  # train in float32 whatever the base dtype
        param.data = param.data.float()
    return params


def inpaint_mask(
    mask_video, latent_frames: int, latent_height: int, latent_width: int, scaling: float
):
    """The InP mask channel [B, f, 1, h, w] from a pixel mask video [B, 1, F, H, W] (1 = to
    generate, 0 = known), built as VideoX-Fun's inpaint pipeline builds it: inverted, the first
    frame resized on its own (the VAE encodes it alone) and the rest trilinearly, times the VAE
    scaling. The official DWM inference passes an all-zero mask video: every pixel is known."""
    import torch
    from torch.nn.functional import interpolate

    known = 1 - mask_video.float()
    grid = (latent_height, latent_width)
    parts = [interpolate(known[:, :, :1], size=(1, *grid), mode="trilinear", align_corners=False)]
    if latent_frames > 1:
        rest = (latent_frames - 1, *grid)
        parts.append(interpolate(known[:, :, 1:], size=rest, mode="trilinear", align_corners=False))
    return (torch.cat(parts, dim=2) * scaling).permute(0, 2, 1, 3, 4)


def model_input(noisy, static, hand, scaling: float, mask=None):
    """[noisy | mask | static | hand] on dim 2 of [B, F, C, h, w]; the mask defaults to ones x
    scaling, the official trainer's (the static video is known everywhere)."""
    import torch

    if mask is None:
        mask = torch.full_like(noisy[:, :, :1], scaling)
    parts = [noisy, mask, static, hand]
    return torch.cat([part.to(noisy.dtype) for part in parts], dim=2)


def rotary_embedding(
    transformer, latent_frames: int, latent_height: int, latent_width: int, device
):
    """3-D RoPE for the latent grid; the model runs without it silently, so it must be passed."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    config = transformer.config
    if not config.use_rotary_positional_embeddings:
        return None
    if config.patch_size_t is not None:
        raise DwmDataError("CogVideoX 1.5 (patch_size_t) is not supported; DWM uses V1.1")
    patch = config.patch_size
    grid = (latent_height // patch, latent_width // patch)
    crops = get_resize_crop_region_for_grid(
        grid, config.sample_width // patch, config.sample_height // patch
    )
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=crops,
        grid_size=grid,
        temporal_size=latent_frames,
        device=device,
    )


def predict(
    transformer,
    noisy,
    static,
    hand,
    prompt_embeds,
    timesteps,
    scaling: float,
    runner=None,
    mask=None,
):
    """The model's v-prediction for [B, F, 16, h, w] noisy latents under the two conditions;
    `runner` is a wrapper that runs the transformer (DistributedDataParallel), `mask` the InP
    mask channel (default: everything known)."""
    _, frames, _, height, width = noisy.shape
    rope = rotary_embedding(transformer, frames, height, width, noisy.device)
    return (runner or transformer)(
        hidden_states=model_input(noisy, static, hand, scaling, mask),
        encoder_hidden_states=prompt_embeds,
        timestep=timesteps,
        image_rotary_emb=rope,
        return_dict=False,
    )[0]


def save_weights(transformer, folder: Path, record: dict[str, Any]) -> None:
    """The two files as the official trainer writes them, plus our adapter record (rank, alpha,
    targets, base model, text length) that the official loader ignores."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    lora = get_peft_model_state_dict(transformer)
    save_file({k: v.detach().cpu().contiguous() for k, v in lora.items()}, str(folder / LORA_FILE))
    non_lora = {
        name: param.detach().cpu().contiguous()
        for name, param in transformer.named_parameters()
        if param.requires_grad and "lora" not in name
    }
    save_file(non_lora, str(folder / NON_LORA_FILE))
    (folder / ADAPTER_FILE).write_text(json.dumps(record, indent=2))


def adapter_settings(folder: Path) -> dict[str, Any]:
    """Rank, alpha and text length of saved weights: our record, or for the official release
    the rank read from the shapes, alpha = rank and T5's 226 tokens."""
    if (folder / ADAPTER_FILE).is_file():
        return json.loads((folder / ADAPTER_FILE).read_text())
    from safetensors import safe_open

    path = _weights_file(folder, LORA_FILE)
    with safe_open(str(path), "pt") as handle:
        key = next((k for k in handle.keys() if k.endswith("lora_A.weight")), None)  # noqa: SIM118
        if key is None:
            raise DwmDataError(f"{path} holds no LoRA weights (no key ends in lora_A.weight)")
        rank = handle.get_slice(key).get_shape()[0]
    return {"rank": rank, "alpha": rank, "text_length": 226}


def load_weights(transformer, folder: Path) -> None:
    """Load both files into a widened transformer that already carries the adapter, through the
    official loader's calls; a file that does not fit the adapter is refused in one line (peft
    itself loads what matches and says nothing)."""
    import torch
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = _weights_file(folder, LORA_FILE)
    lora = {k.removeprefix("transformer."): v for k, v in load_file(str(path)).items()}
    try:
        result = set_peft_model_state_dict(
            transformer, convert_unet_state_dict_to_peft(lora), "default"
        )
    except RuntimeError as exc:  # torch's multi-line "size mismatch for ..." report
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
        first = next((line for line in lines if "size mismatch" in line), lines[0])
        raise DwmDataError(f"{path}: LoRA shapes differ from the adapter's: {first}") from exc
    unexpected = set(result.unexpected_keys)
    if not set(lora) - unexpected:
        first = next(iter(sorted(lora)), "none")
        raise DwmDataError(
            f"{path}: no LoRA key matches the model (first key: {first}); "
            "expected CogVideoX keys like transformer_blocks.0.attn1.to_q.lora_A.weight"
        )
    if unexpected:
        raise DwmDataError(
            f"{path}: LoRA keys the model lacks: {', '.join(sorted(unexpected)[:3])}"
        )
    missing = sorted(k for k in result.missing_keys if "lora_" in k)
    if missing:
        raise DwmDataError(
            f"{path} lacks {len(missing)} LoRA tensors of the adapter (e.g. {missing[0]}): "
            "it was trained on other layers"
        )
    own = dict(transformer.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(_weights_file(folder, NON_LORA_FILE))).items():
            if name not in own or own[name].shape != value.shape:
                have = tuple(own[name].shape) if name in own else "nothing"
                raise DwmDataError(f"{folder}: {name} is {tuple(value.shape)}, model has {have}")
            own[name].copy_(value.to(own[name].dtype))


def _weights_file(folder: Path, name: str) -> Path:
    from dwm_data.errors import MissingAssetError

    path = folder / name
    if not path.is_file():
        raise MissingAssetError(
            f"weights file {name}", str(folder), "train one with dwm-data train"
        )
    return path
