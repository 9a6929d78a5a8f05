"""Wan2.1-Fun-InP (1.3B, 14B) behind the backbone seam (snuvclab/dwm `training/wan/`).

The release is not in diffusers' layout (VideoX-Fun `config/wan2.1/wan_civitai.yaml`): the
transformer's `config.json` (original names: `in_dim`, `dim`, `num_heads`, ...) and weights sit at
the folder root with the original keys, the VAE is `Wan2.1_VAE.pth`, the text encoder Wan's own
UMT5 checkpoint `models_t5_umt5-xxl-enc-bf16.pth` with the `google/umt5-xxl` tokenizer folder.
The parts are built as diffusers' and transformers' real classes (`WanTransformer3DModel`,
`AutoencoderKLWan`, `UMT5EncoderModel`); the transformer and VAE keys go through diffusers' own
single-file converters, the T5 keys through the table below.

DWM on Wan (the official hand-concat pipeline): [B, C, F, h, w] latents normalised per channel
by the VAE's `latents_mean`/`latents_std`; the input is `[noisy 16 | mask 4 (ones, unscaled) |
static 16 | hand 16]` = 52 channels on dim 1, the 16 hand channels new and zero-initialised in
the Conv3d patch embedding; the text padded with zeros to the model's `text_len` (512), as
VideoX-Fun's transformer pads it; flow matching with shift 5 (x_t = (1-s) x0 + s e, target
e - x0, uniform timestep density, no loss weighting), sampled with diffusers'
`FlowMatchEulerDiscreteScheduler` (the official inference's scheduler; `sampler: unipc` picks
diffusers' `UniPCMultistepScheduler` in flow mode, as diffusers' own Wan pipelines ship); LoRA on
every Linear of the transformer, saved as VideoX-Fun's LoRA network saves it (`lora_unet_<module>`
keys with lora_down/lora_up/alpha) next to `non_lora_weights.safetensors` (the full patch
embedding).

The CLIP image condition. An InP release is `model_type: i2v`: its cross-attention has an image
branch (`img_emb`, `k_img`, `v_img`) over 257 CLIP tokens. The official inference always feeds
it: the CLIP features of `clip_image` when one is given, else zeroed features (the official "dwm"
mode gives none). We do the same in training and sampling; the official trainer passes no CLIP
features in "dwm" mode, so there VideoX-Fun's i2v attention reads the first 257 of the 512 text
positions as image tokens, a train/sample mismatch we do not copy. A release without the branch
(`model_type: t2v`) gets no image tokens. The image encoder
`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (Wan's open-clip XLM-RoBERTa ViT-H/14)
is loaded as transformers' `CLIPVisionModel` only when an image is given; its features are the
penultimate block's 257 tokens of the image resized bicubically to 224x224, as VideoX-Fun's
`CLIPModel` computes them. `model_fps` (the official RoPE time scale 16 / fps) is 16 in the
official recipe, a scale of 1: nothing to apply.
"""

from __future__ import annotations

import json
import math
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.extras import require

CONFIG = "config.json"
VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
TOKENIZER = "google/umt5-xxl"
LORA_FILE = "lora_diffusion_pytorch_model.safetensors"
NON_LORA_FILE = "non_lora_weights.safetensors"
LORA_PREFIX = "lora_unet__"  # the root module's empty name between prefix and path
SHIFT = 5.0  # wan_civitai.yaml scheduler_kwargs.shift
TRAIN_TIMESTEPS = 1000
MASK_CHANNELS = 4  # the pixel mask, four frames packed per latent frame
LATENT_CHANNELS = 16
TEXT_DIM = 4096  # UMT5-XXL; the release's config.json does not name it
IMAGE_TOKENS = 257  # what VideoX-Fun's i2v attention reserves: 16 x 16 patches + class token
CLIP_HEADS = 16  # the fixed ViT-H/14 of clip_xlm_roberta_vit_h_14 (not readable from weights)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAMPLERS = ("euler", "unipc")  # the first is the official one
# Every Linear of diffusers' WanTransformer3DModel, as peft suffixes; the last four are the i2v
# image branch (k_img, v_img, img_emb), absent from a t2v release.
LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2", "linear_1", "linear_2",
    "time_proj", "proj_out", "add_k_proj", "add_v_proj", "image_embedder.ff.net.0.proj",
    "image_embedder.ff.net.2",
)  # fmt: skip

# diffusers name -> original name, the inverse of diffusers' `convert_wan_transformer_to_diffusers`
# (applied in order; block norms 2 and 3 trade places).
_TO_ORIGINAL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".o."),
    (".add_k_proj.", ".k_img."),
    (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
)


def original_key(name: str) -> str:
    """A diffusers WanTransformer3DModel key under its name in the Wan release."""
    if name.startswith("proj_out."):
        return "head.head." + name.removeprefix("proj_out.")
    if name == "scale_shift_table":
        return "head.modulation"
    for new, old in _TO_ORIGINAL:
        name = name.replace(new, old)
    name = re.sub(r"^(blocks\.\d+\.)scale_shift_table$", r"\1modulation", name)
    return re.sub(r"^(blocks\.\d+\.)norm([23])\.", lambda m: f"{m[1]}norm{5 - int(m[2])}.", name)


# Wan's T5 encoder (the release's .pth) -> transformers' UMT5EncoderModel, per block {i}.
_T5_KEYS = {
    "token_embedding.weight": "shared.weight",
    "norm.weight": "encoder.final_layer_norm.weight",
}
_T5_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def t5_to_transformers(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        match = re.match(r"blocks\.(\d+)\.(.+)", key)
        if match and match[2] in _T5_BLOCK_KEYS:
            out[f"encoder.block.{match[1]}.{_T5_BLOCK_KEYS[match[2]]}"] = value
        elif key in _T5_KEYS:
            out[_T5_KEYS[key]] = value
        else:
            raise DwmDataError(f"{T5_FILE}: unexpected key {key} for Wan's UMT5 encoder")
    return out


def t5_to_original(state: dict) -> dict:
    inverse = {v: k for k, v in _T5_KEYS.items()}
    block = {v: k for k, v in _T5_BLOCK_KEYS.items()}
    out = {}
    for key, value in state.items():
        match = re.match(r"encoder\.block\.(\d+)\.(.+)", key)
        if match:
            out[f"blocks.{match[1]}.{block[match[2]]}"] = value
        elif key in inverse:
            out[inverse[key]] = value
    return out


# Wan's open-clip ViT (the `visual.` half of the release's CLIP .pth) -> transformers'
# CLIPVisionModel, per block; `to_qkv` is split into q, k, v.
_CLIP_KEYS = {
    "patch_embedding.weight": "embeddings.patch_embedding.weight",
    "pre_norm.weight": "pre_layrnorm.weight",
    "pre_norm.bias": "pre_layrnorm.bias",
    "post_norm.weight": "post_layernorm.weight",
    "post_norm.bias": "post_layernorm.bias",
}
_CLIP_BLOCK_KEYS = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
}


def clip_to_transformers(state: dict) -> dict:
    """The vision tower of the release's CLIP checkpoint in CLIPVisionModel's names; the text
    tower, the logit scale and the joint-space projection (`visual.head`) are not used by Wan."""
    out = {}
    for key, value in state.items():
        if not key.startswith("visual.") or key == "visual.head":
            continue
        key = key.removeprefix("visual.")
        block = re.match(r"transformer\.(\d+)\.(.+)\.(weight|bias)$", key)
        if key == "cls_embedding":
            out["embeddings.class_embedding"] = value.reshape(-1)
        elif key == "pos_embedding":
            out["embeddings.position_embedding.weight"] = value[0]
        elif block and block[2] == "attn.to_qkv":
            for part, chunk in zip("qkv", value.chunk(3), strict=True):
                out[f"encoder.layers.{block[1]}.self_attn.{part}_proj.{block[3]}"] = chunk
        elif block and block[2] in _CLIP_BLOCK_KEYS:
            out[f"encoder.layers.{block[1]}.{_CLIP_BLOCK_KEYS[block[2]]}.{block[3]}"] = value
        elif key in _CLIP_KEYS:
            out[_CLIP_KEYS[key]] = value
        else:
            raise DwmDataError(f"{CLIP_FILE}: unexpected key visual.{key} for Wan's CLIP ViT")
    return out


def transformer_config(config: dict, image_dim: int | None = None) -> dict:
    """diffusers' WanTransformer3DModel arguments from the release's config.json, with the image
    branch when the CLIP feature width is given (read from the weights: the config does not
    name it; VideoX-Fun builds `img_emb` for `model_type: i2v`)."""
    heads = config["num_heads"]
    image = {"image_dim": image_dim, "added_kv_proj_dim": config["dim"]} if image_dim else {}
    return image | {
        "patch_size": tuple(config.get("patch_size", (1, 2, 2))),
        "num_attention_heads": heads,
        "attention_head_dim": config["dim"] // heads,
        "in_channels": config["in_dim"],
        "out_channels": config["out_dim"],
        "text_dim": config.get("text_dim", TEXT_DIM),
        "freq_dim": config["freq_dim"],
        "ffn_dim": config["ffn_dim"],
        "num_layers": config["num_layers"],
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": config["eps"],
    }


def _weights(folder: Path) -> dict:
    """The root safetensors, one file or an index of shards (the 14B)."""
    from safetensors.torch import load_file

    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.is_file()
        else ["diffusion_pytorch_model.safetensors"]
    )
    state = {}
    for name in files:
        state |= load_file(str(folder / name))
    return state


class Wan:
    """The frozen parts of a Wan2.1-Fun-InP folder on one device, in one compute dtype."""

    kind = "wan"
    lora_targets = LORA_TARGETS
    trainable_patterns = ("patch_embedding",)
    text_length = 512
    negative_prompt = "bad detailed"  # training/wan/inference.py --negative_prompt default
    HOW_TO_GET = (
        "download alibaba-pai/Wan2.1-Fun-V1.1-14B-InP or -1.3B-InP (as released) to that "
        "folder, or set train.base_model: tiny-wan"
    )

    def __init__(self, folder: Path, device: str = "cpu", dtype: Any = None):
        torch = require("torch", "train")
        from dwm_model.backbone import check_base

        check_base(folder)
        from dwm_model.base import _quiet_loading

        _quiet_loading()
        self.folder = folder
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.config = json.loads((folder / CONFIG).read_text())

    @staticmethod
    def holds(folder: Path) -> bool:
        """The release keeps a `WanModel` config.json at its root."""
        config = folder / CONFIG
        return config.is_file() and json.loads(config.read_text()).get("_class_name") == "WanModel"

    @staticmethod
    def missing(folder: Path) -> list[str]:
        names = [CONFIG, VAE_FILE, T5_FILE, f"{TOKENIZER}/spiece.model"]
        missing = [name for name in names if not (folder / name).is_file()]
        weights = folder / "diffusion_pytorch_model.safetensors"
        if not weights.is_file() and not weights.with_suffix(".safetensors.index.json").is_file():
            missing.append(weights.name)
        return missing

    @staticmethod
    def identity(folder: Path) -> bytes:
        """The tokenizer's config and the sizes of the VAE and T5 checkpoints (too large to
        hash on every run; the release has no config beside them)."""
        sizes = {name: (folder / name).stat().st_size for name in (VAE_FILE, T5_FILE)}
        config = (folder / TOKENIZER / "tokenizer_config.json").read_bytes()
        return config + json.dumps(sizes, sort_keys=True).encode()

    # -- parts --------------------------------------------------------------------------------
    def load_transformer(self):
        """diffusers' class from the root config and weights (original keys converted by
        diffusers' converter), the i2v image branch included."""
        import torch

        diffusers = require("diffusers", "train")
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

        raw = _weights(self.folder)
        image = raw.get("img_emb.proj.0.weight")
        args = transformer_config(self.config, None if image is None else image.shape[0])
        state = convert_wan_transformer_to_diffusers(raw)
        model = diffusers.WanTransformer3DModel(**args)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            bad = (result.missing_keys or result.unexpected_keys)[0]
            raise DwmDataError(f"{self.folder}: transformer weights do not fit the config ({bad})")
        model.to(self.device)
        # diffusers keeps its norms and embeddings in float32 only through from_pretrained
        return model if self.dtype == torch.float32 else model.to(self.dtype)

    @cached_property
    def vae(self):
        """diffusers' AutoencoderKLWan sized from the checkpoint (the release has no config: the
        architecture is fixed, its width and latent size read from the weights)."""
        import torch

        diffusers = require("diffusers", "train")
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

        raw = torch.load(self.folder / VAE_FILE, map_location="cpu", weights_only=True)
        state = convert_wan_vae_to_diffusers(raw)
        vae = diffusers.AutoencoderKLWan(
            base_dim=state["encoder.conv_in.weight"].shape[0],
            z_dim=state["quant_conv.weight"].shape[0] // 2,
        )
        vae.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return vae.to(self.device).eval().requires_grad_(False)

    @cached_property
    def text_encoder(self):
        import torch

        transformers = require("transformers", "train")
        raw = torch.load(self.folder / T5_FILE, map_location="cpu", weights_only=True)
        state = t5_to_transformers(raw)
        vocab, width = state["shared.weight"].shape
        buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape  # fmt: skip
        config = transformers.UMT5Config(
            vocab_size=vocab,
            d_model=width,
            d_kv=state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
            d_ff=state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
            num_layers=len({k.split(".")[2] for k in state if k.startswith("encoder.block.")}),
            num_heads=heads,
            relative_attention_num_buckets=buckets,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            dropout_rate=0.0,
        )
        model = transformers.UMT5EncoderModel(config)
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return model.to(self.device, self.dtype).eval().requires_grad_(False)

    @cached_property
    def tokenizer(self):
        from dwm_model.tokenizer import T5Tokenizer

        return T5Tokenizer(self.folder / TOKENIZER)

    @cached_property
    def image_encoder(self):
        """transformers' CLIPVisionModel sized from the release's CLIP checkpoint (the file has
        no config; the architecture is the fixed ViT-H/14 of 16 heads, GELU, eps 1e-5)."""
        import torch

        transformers = require("transformers", "train")
        path = self.folder / CLIP_FILE
        if not path.is_file():
            raise MissingAssetError(
                f"image encoder {CLIP_FILE}", str(self.folder),
                "download the release with its image encoder, or give no CLIP image",
            )  # fmt: skip
        state = clip_to_transformers(torch.load(path, map_location="cpu", weights_only=True))
        width, _, patch, _ = state["embeddings.patch_embedding.weight"].shape
        positions = state["embeddings.position_embedding.weight"].shape[0]
        layers = {k.split(".")[2] for k in state if k.startswith("encoder.layers.")}
        config = transformers.CLIPVisionConfig(
            hidden_size=width,
            intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[0],
            num_hidden_layers=len(layers),
            num_attention_heads=CLIP_HEADS,
            image_size=patch * math.isqrt(positions - 1),
            patch_size=patch,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
        )
        model = transformers.CLIPVisionModel(config)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return model.to(self.device).eval().requires_grad_(False)

    def encode_image(self, image):
        """The CLIP condition of one (H, W, 3) uint8 frame, [1, 257, 1280] for the release: as
        VideoX-Fun's CLIPModel, the frame in [-1, 1] resized bicubically to the encoder's square
        size, CLIP-normalised, the penultimate block's tokens."""
        import numpy as np
        import torch
        from torch.nn.functional import interpolate

        encoder = self.image_encoder
        size = encoder.config.image_size
        x = (
            torch.as_tensor(np.array(image)).to(self.device).permute(2, 0, 1)[None].float() / 127.5
            - 1
        )
        x = interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        mean, std = (torch.tensor(v, device=self.device).view(1, 3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))  # fmt: skip
        with torch.no_grad():
            states = encoder(pixel_values=(x * 0.5 + 0.5 - mean) / std, output_hidden_states=True)
        return states.hidden_states[-2].to(self.dtype)

    def _image_condition(self, transformer, batch: int, image):
        """What the image branch attends to: the given CLIP features, or zeroed ones as the
        official inference feeds without a CLIP image; None for a model without the branch."""
        import torch

        if transformer.condition_embedder.image_embedder is None:
            if image is not None:
                raise DwmDataError(f"{self.folder}: this Wan model (t2v) has no image condition")
            return None
        if image is None:
            width = transformer.condition_embedder.image_embedder.norm1.normalized_shape[0]
            return torch.zeros(batch, IMAGE_TOKENS, width, device=self.device)
        return image

    def _text(self, prompt_embeds):
        """Prompt states padded with zeros to the model's text length, as VideoX-Fun's
        transformer pads its context (the zero rows still pass the text embedder)."""
        from torch.nn.functional import pad

        length = self.config.get("text_len", self.text_length)
        if prompt_embeds.shape[1] > length:
            raise DwmDataError(
                f"prompt embeddings of {prompt_embeds.shape[1]} tokens; the Wan model takes "
                f"at most {length} (train.max_text_length)"
            )
        return pad(prompt_embeds, (0, 0, 0, length - prompt_embeds.shape[1]))

    @cached_property
    def scheduler(self):
        diffusers = require("diffusers", "train")
        return diffusers.FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=TRAIN_TIMESTEPS, shift=SHIFT
        )

    @cached_property
    def _norm(self):
        import torch

        config = self.vae.config
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(config.latents_mean, device=self.device).view(shape)
        std = torch.tensor(config.latents_std, device=self.device).view(shape)
        return mean, std

    # -- the seam -----------------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str], max_length: int):
        """UMT5 states with the padding positions zeroed, as Wan's pipelines pass them (each
        prompt cut to its length, then padded with zeros to the text length)."""
        import torch

        ids = torch.tensor(self.tokenizer(prompts, max_length), device=self.device)
        mask = (ids != self.tokenizer.pad_id).long()
        with torch.no_grad():
            hidden = self.text_encoder(ids, attention_mask=mask).last_hidden_state
        return (hidden * mask[..., None]).to(self.dtype)

    def encode_moments(self, videos):
        import torch

        with torch.no_grad():
            return self.vae.encode(videos.to(self.device, torch.float32)).latent_dist.parameters

    def latents(self, moments, generator=None, mode: bool = False):
        """[B, 2C, f, h, w] moments to normalised [B, C, f, h, w] latents: (z - mean) / std."""
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        dist = DiagonalGaussianDistribution(moments)
        z = dist.mode() if mode else dist.sample(generator=generator)
        mean, std = self._norm
        return ((z - mean) / std).contiguous()

    def decode_latents(self, latents):
        import torch

        mean, std = self._norm
        with torch.no_grad():
            return self.vae.decode(latents.float() * std + mean).sample.clamp(-1, 1)

    def world_transformer(self, condition_channels: int):
        """The InP transformer (36 inputs) with `condition_channels` zero-initialised inputs
        appended to its Conv3d patch embedding, as the official `_extend_patch_embedding`."""
        import torch

        inp = 2 * LATENT_CHANNELS + MASK_CHANNELS
        have = self.config["in_dim"]
        if have not in (inp, inp + condition_channels):
            raise DwmDataError(
                f"Wan transformer takes {have} input channels; expected an InP model ({inp}) "
                f"or a widened one ({inp + condition_channels})"
            )
        transformer = self.load_transformer()
        if have == inp:
            proj = transformer.patch_embedding
            wider = torch.nn.Conv3d(
                proj.in_channels + condition_channels,
                proj.out_channels,
                kernel_size=proj.kernel_size,
                stride=proj.stride,
                device=proj.weight.device,
                dtype=proj.weight.dtype,
            )
            with torch.no_grad():
                wider.weight.zero_()
                wider.weight[:, : proj.in_channels].copy_(proj.weight)
                wider.bias.copy_(proj.bias)
            transformer.patch_embedding = wider
            transformer.register_to_config(in_channels=proj.in_channels + condition_channels)
        return transformer

    def training_example(self, z0, generator):
        """Flow matching as the official trainer: u uniform ("none" density), the scheduler's
        timestep and sigma at index u x 1000, x_t = (1 - s) x0 + s e, target e - x0."""
        import torch

        scheduler = self.scheduler
        u = torch.rand(z0.shape[0], generator=generator)
        index = (u * scheduler.config.num_train_timesteps).long()
        t = scheduler.timesteps[index].to(self.device)
        sigma = scheduler.sigmas[index].to(self.device, z0.dtype).view(-1, 1, 1, 1, 1)
        noise = torch.randn(z0.shape, generator=generator).to(self.device)
        return (1 - sigma) * z0 + sigma * noise, t, noise - z0

    def predict(
        self, transformer, noisy, static, hand, prompt_embeds, timesteps, runner=None, mask=None,
        image=None,
    ):  # fmt: skip
        """`image`: CLIP features from `encode_image` (one row per batch row), or None."""
        import torch

        if mask is None:
            mask = torch.ones_like(noisy[:, :MASK_CHANNELS])
        parts = [noisy, mask, static, hand]
        image = self._image_condition(transformer, noisy.shape[0], image)
        return (runner or transformer)(
            hidden_states=torch.cat([p.to(noisy.dtype) for p in parts], dim=1),
            timestep=timesteps,
            encoder_hidden_states=self._text(prompt_embeds).to(noisy.dtype),
            encoder_hidden_states_image=None if image is None else image.to(noisy.dtype),
            return_dict=False,
        )[0]

    def inference_mask(self, video_shape: tuple[int, ...], latent_shape):
        """All ones (every pixel known), unscaled, as the official trainer's mask latents."""
        import torch

        batch, _, frames, height, width = latent_shape
        return torch.ones((batch, MASK_CHANNELS, frames, height, width), device=self.device)

    def sampler(self, name: str = ""):
        """A fresh flow-matching sampler with shift 5: "euler" (the default) is the official
        inference's `FlowMatchEulerDiscreteScheduler`; "unipc" diffusers' `UniPCMultistepScheduler`
        set up for flow prediction as diffusers' Wan pipelines ship it."""
        diffusers = require("diffusers", "train")
        name = name or SAMPLERS[0]
        if name == "euler":
            return diffusers.FlowMatchEulerDiscreteScheduler(
                num_train_timesteps=TRAIN_TIMESTEPS, shift=SHIFT
            )
        if name == "unipc":
            return diffusers.UniPCMultistepScheduler(
                num_train_timesteps=TRAIN_TIMESTEPS,
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                flow_shift=SHIFT,
            )
        raise DwmDataError(f"sampler '{name}' is not a Wan sampler (one of: {', '.join(SAMPLERS)})")

    def denoise(self, latents, steps: int, model, sampler: str = ""):
        scheduler = self.sampler(sampler)
        scheduler.set_timesteps(steps, device=self.device)
        for t in scheduler.timesteps:
            output = model(latents, t)
            latents = scheduler.step(output, t, latents, return_dict=False)[0]
        return latents

    # -- LoRA ---------------------------------------------------------------------------------
    def add_lora(self, transformer, rank: int, alpha: int, targets, trainable) -> list:
        from dwm_model.model import add_lora

        return add_lora(transformer, rank, alpha, tuple(targets), tuple(trainable))

    def save_weights(self, transformer, folder: Path, record: dict[str, Any]) -> None:
        """The official LoRA network's file (`lora_unet_<original module, dots as _>` with
        lora_down = A, lora_up = B, alpha) and the trainable non-LoRA tensors, plus our record."""
        import torch
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        from dwm_model.model import ADAPTER_FILE

        folder.mkdir(parents=True, exist_ok=True)
        alpha = float(record["alpha"])
        out = {}
        for key, value in get_peft_model_state_dict(transformer).items():
            module, kind = re.match(r"(.+)\.lora_([AB])\.weight$", key).groups()
            name = lora_name(module)
            out[f"{name}.lora_{'down' if kind == 'A' else 'up'}.weight"] = value.detach().cpu()
            out[f"{name}.alpha"] = torch.tensor(alpha)
        save_file({k: v.contiguous() for k, v in out.items()}, str(folder / LORA_FILE))
        non_lora = {
            name: param.detach().cpu().contiguous()
            for name, param in transformer.named_parameters()
            if param.requires_grad and "lora" not in name
        }
        save_file(non_lora, str(folder / NON_LORA_FILE))
        (folder / ADAPTER_FILE).write_text(json.dumps(record, indent=2))

    def adapter_settings(self, folder: Path) -> dict[str, Any]:
        """Our record, or for the official release rank from the shapes, alpha from the file,
        and every Linear as targets."""
        from safetensors import safe_open

        from dwm_model.model import ADAPTER_FILE

        if (folder / ADAPTER_FILE).is_file():
            return json.loads((folder / ADAPTER_FILE).read_text())
        path = _file(folder, LORA_FILE)
        with safe_open(str(path), "pt") as handle:
            down = next((k for k in handle.keys() if k.endswith(".lora_down.weight")), None)  # noqa: SIM118
            if down is None:
                raise DwmDataError(
                    f"{path} holds no LoRA weights (no key ends in lora_down.weight)"
                )
            rank = handle.get_slice(down).get_shape()[0]
            alpha_key = down.replace(".lora_down.weight", ".alpha")
            alpha = float(handle.get_tensor(alpha_key)) if alpha_key in handle.keys() else rank  # noqa: SIM118
        return {"rank": rank, "alpha": alpha, "text_length": self.text_length}

    def load_weights(self, transformer, folder: Path) -> None:
        """Both official files into a widened transformer that carries the adapter; a key the
        model lacks, or an adapter layer the file lacks, is refused in one line."""
        import torch
        from safetensors.torch import load_file

        path = _file(folder, LORA_FILE)
        names = {
            lora_name(module): module
            for module, _ in transformer.named_modules()
            if hasattr(_, "lora_A")
        }
        params = dict(transformer.named_parameters())
        seen = set()
        with torch.no_grad():
            for key, value in load_file(str(path)).items():
                name, part = key.split(".", 1)
                if name not in names:
                    raise DwmDataError(f"{path}: LoRA key the model lacks: {key}")
                if part == "alpha":
                    continue
                side = {"lora_down.weight": "lora_A", "lora_up.weight": "lora_B"}[part]
                target = params[f"{names[name]}.{side}.default.weight"]
                if target.shape != value.shape:
                    raise DwmDataError(
                        f"{path}: {key} is {tuple(value.shape)}, the adapter's {tuple(target.shape)}"
                    )
                target.copy_(value.to(target.dtype))
                seen.add(name)
            if set(names) - seen:
                first = sorted(set(names) - seen)[0]
                raise DwmDataError(
                    f"{path} lacks LoRA tensors of {len(set(names) - seen)} adapter layers "
                    f"(e.g. {first}): it was trained on other layers"
                )
            for name, value in load_file(str(_file(folder, NON_LORA_FILE))).items():
                if name not in params or params[name].shape != value.shape:
                    have = tuple(params[name].shape) if name in params else "nothing"
                    raise DwmDataError(
                        f"{folder}: {name} is {tuple(value.shape)}, model has {have}"
                    )
                params[name].copy_(value.to(params[name].dtype))


def lora_name(module: str) -> str:
    """A diffusers module name as VideoX-Fun's LoRA network names it."""
    return LORA_PREFIX + original_key(module + ".weight").removesuffix(".weight").replace(".", "_")


def _file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise MissingAssetError(
            f"weights file {name}", str(folder), "train one with dwm-data train"
        )
    return path
