"""A tiny random Wan2.1-Fun-InP folder in the release's own layout (alibaba-pai/Wan2.1-Fun-1.3B-InP).

What a download holds is reproduced, not what our loader happens to read: the transformer's
`config.json` at the root with the release's keys (`_class_name: WanModel`, `in_dim` 36,
`model_type: i2v`, ...) and `diffusion_pytorch_model.safetensors` beside it in the original key
names, the i2v image branch included (`img_emb`, `k_img`, `v_img`); `Wan2.1_VAE.pth` and
`models_t5_umt5-xxl-enc-bf16.pth` (bf16 tensors) as torch pickles of original-key state dicts;
the tokenizer in `google/umt5-xxl/`. The models are diffusers' and transformers' real classes
(`WanTransformer3DModel`, `AutoencoderKLWan` in the Wan VAE's fixed architecture at width 8,
`UMT5EncoderModel`), small; their keys are written in the original names and checked against
diffusers' own converters. One key is ours: `text_dim` (32 here; the release's UMT5-XXL is 4096
and its config does not say so), which VideoX-Fun's transformer class takes as an argument.
`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` holds the vision tower of Wan's CLIP
in its own names (`visual.patch_embedding`, `visual.transformer.N.attn.to_qkv`, ...) with its
`visual.head` and `log_scale`, built from transformers' `CLIPVisionModel` at 224 px / patch 14
(257 tokens, as the release) and width 32 (the release's 1280 is what `img_emb` reads; its width
is taken from the weights); the XLM-RoBERTa text tower, which Wan never runs, is left out.
`create_tiny_wan_base(..., image_encoder=False)` writes the release without the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dwm_data.extras import require
from dwm_model.wan import (
    CLIP_FILE,
    CLIP_HEADS,
    CONFIG,
    T5_FILE,
    TOKENIZER,
    VAE_FILE,
    original_key,
    t5_to_original,
    transformer_config,
)

TEXT_WIDTH = 32
IMAGE_WIDTH = 32  # the tiny CLIP ViT's width = the tiny img_emb's input (1280 in the release)
RELEASE_CONFIG = {
    "_class_name": "WanModel",
    "_diffusers_version": "0.30.0",
    "dim": 32,
    "eps": 1e-06,
    "ffn_dim": 64,
    "freq_dim": 256,
    "in_dim": 36,
    "model_type": "i2v",
    "num_heads": 2,
    "num_layers": 2,
    "out_dim": 16,
    "text_dim": TEXT_WIDTH,
    "text_len": 512,
}


def vae_original_key(name: str) -> str:
    """A diffusers AutoencoderKLWan key under its name in Wan2.1_VAE.pth: the inverse of
    diffusers' `convert_wan_vae_to_diffusers` for the fixed Wan 2.1 architecture."""
    resnet = {
        "norm1.gamma": "residual.0.gamma",
        "conv1": "residual.2",
        "norm2.gamma": "residual.3.gamma",
        "conv2": "residual.6",
        "conv_shortcut": "shortcut",
    }

    def rename(rest: str) -> str:
        for new, old in resnet.items():
            if rest.startswith(new):
                return old + rest[len(new) :]
        return rest

    fixed = {
        "quant_conv": "conv1",
        "post_quant_conv": "conv2",
        "encoder.conv_in": "encoder.conv1",
        "decoder.conv_in": "decoder.conv1",
        "encoder.norm_out.gamma": "encoder.head.0.gamma",
        "encoder.conv_out": "encoder.head.2",
        "decoder.norm_out.gamma": "decoder.head.0.gamma",
        "decoder.conv_out": "decoder.head.2",
    }
    for new, old in fixed.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new) :]
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", name):
        return f"{m[1]}.middle.{2 * int(m[2])}.{rename(m[3])}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", name):
        return f"{m[1]}.middle.1.{m[2]}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.(.+)", name):
        return f"encoder.downsamples.{m[1]}.{rename(m[2])}"
    if m := re.match(r"decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.+)", name):
        return f"decoder.upsamples.{4 * int(m[1]) + int(m[2])}.{rename(m[3])}"
    if m := re.match(r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.(.+)", name):
        return f"decoder.upsamples.{4 * int(m[1]) + 3}.{m[2]}"
    return name


def _transformer(folder: Path) -> None:
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from safetensors.torch import save_file

    diffusers = require("diffusers", "train")
    model = diffusers.WanTransformer3DModel(**transformer_config(RELEASE_CONFIG, IMAGE_WIDTH))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    original = {original_key(k): v for k, v in state.items()}
    back = convert_wan_transformer_to_diffusers(dict(original))
    if set(back) != set(state):
        raise AssertionError(f"Wan key names disagree with diffusers': {set(back) ^ set(state)}")
    save_file(original, str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / CONFIG).write_text(json.dumps(RELEASE_CONFIG, indent=2) + "\n")


def _vae(folder: Path) -> None:
    import torch
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    diffusers = require("diffusers", "train")
    vae = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16)
    state = vae.state_dict()
    original = {vae_original_key(k): v.contiguous() for k, v in state.items()}
    back = convert_wan_vae_to_diffusers(dict(original))
    if set(back) != set(state):
        raise AssertionError(
            f"Wan VAE key names disagree with diffusers': {set(back) ^ set(state)}"
        )
    torch.save(original, folder / VAE_FILE)


def _text_encoder(folder: Path, vocab: int) -> None:
    import torch

    transformers = require("transformers", "train")
    config = transformers.UMT5Config(
        vocab_size=vocab,
        d_model=TEXT_WIDTH,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    model = transformers.UMT5EncoderModel(config)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    state.pop("encoder.embed_tokens.weight")  # tied to shared in the module, one table in Wan's
    torch.save(t5_to_original(state), folder / T5_FILE)


def clip_original_key(name: str) -> str:
    """A transformers CLIPVisionModel key under its name in Wan's CLIP checkpoint (q, k, v are
    packed into `to_qkv` by the caller)."""
    fixed = {
        "embeddings.patch_embedding.weight": "patch_embedding.weight",
        "pre_layrnorm": "pre_norm",
        "post_layernorm": "post_norm",
    }
    for new, old in fixed.items():
        name = name.replace(new, old)
    block = {
        "layer_norm1": "norm1",
        "layer_norm2": "norm2",
        "self_attn.out_proj": "attn.proj",
        "mlp.fc1": "mlp.0",
        "mlp.fc2": "mlp.2",
    }
    if m := re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", name):
        return f"visual.transformer.{m[1]}.{block.get(m[2], m[2])}.{m[3]}"
    return "visual." + name


def _image_encoder(folder: Path) -> None:
    import torch

    transformers = require("transformers", "train")
    config = transformers.CLIPVisionConfig(
        hidden_size=IMAGE_WIDTH, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=CLIP_HEADS, image_size=224, patch_size=14, hidden_act="gelu",
        layer_norm_eps=1e-5,
    )  # fmt: skip
    state = transformers.CLIPVisionModel(config).state_dict()
    out = {
        clip_original_key(key): value
        for key, value in state.items()
        if not re.search(r"position_ids$|self_attn\.[qkv]_proj\.", key)
    }
    for layer in range(config.num_hidden_layers):
        for kind in ("weight", "bias"):
            qkv = [state[f"encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]  # fmt: skip
            out[f"visual.transformer.{layer}.attn.to_qkv.{kind}"] = torch.cat(qkv)
    out["visual.cls_embedding"] = out.pop("visual.embeddings.class_embedding").view(1, 1, -1)
    out["visual.pos_embedding"] = out.pop("visual.embeddings.position_embedding.weight")[None]
    out["visual.head"] = torch.randn(IMAGE_WIDTH, 16) / IMAGE_WIDTH**0.5
    out["log_scale"] = torch.tensor(2.6593)  # log(1 / 0.07), the CLIP logit scale
    torch.save({k: v.to(torch.float16).contiguous() for k, v in out.items()}, folder / CLIP_FILE)


def create_tiny_wan_base(
    folder: Path, width: int, height: int, frames: int, seed: int = 0, image_encoder: bool = True
) -> Path:
    """Write the tiny Wan base to `folder` (the release's layout) and return it; the geometry
    does not shape a Wan model (no sample size in its config), it is taken for symmetry."""
    torch = require("torch", "train")
    from dwm_model import tiny

    del width, height, frames
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    _transformer(folder)
    _vae(folder)
    if image_encoder:
        _image_encoder(folder)
    tokenizer = folder / TOKENIZER
    tiny._tokenizer(tokenizer.parent / "_t5")
    (tokenizer.parent / "_t5" / "tokenizer").rename(tokenizer)
    (tokenizer.parent / "_t5").rmdir()
    _text_encoder(folder, -(-(tiny.PIECES + tiny.EXTRA_IDS) // 128) * 128)
    return folder
