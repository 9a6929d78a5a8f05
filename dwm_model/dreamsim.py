"""DreamSim (Fu et al. 2023), the ensemble the official DWM evaluation scores with, from the
user's local DreamSim folder (what `dreamsim(cache_dir=FOLDER)` downloads and unzips).

The `dreamsim` package cannot be installed beside this torch build: it, open-clip-torch and
timm all import torchvision, and PyPI's torchvision wheels need a CUDA torch. Its model is
therefore rebuilt from transformers' classes with DreamSim's structure: three ViT-B/16 towers,
DINO (`ViTModel`; the CLS token after block 11, before the last norm), OpenAI CLIP and OpenCLIP
(`CLIPVisionModelWithProjection`; the projected CLS embedding), fed 224x224 bicubic frames
normalised per tower; their features are concatenated (768 + 512 + 512), centred and scaled to
unit length, and the distance is 1 - cosine. DreamSim's fine-tuned LoRA (`ensemble_lora/`) is
merged into the tower weights at load. The folder's files keep DreamSim's own layout: its towers
in the DINO `VisionTransformer` key names, CLIP's projection as `proj`. The tests check the
result against DreamSim's own code with peft's LoRA, run apart from site-packages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import DwmDataError, MissingAssetError

SIZE = 224
HEAD_DIM = 64  # every ViT DreamSim uses has 64-wide heads
# (file in the DreamSim folder, transformers class, activation); extractor order of the ensemble.
TOWERS = (
    ("checkpoints/dino_vitbase16_pretrain.pth", "dino", "gelu"),
    ("clip_vitb16_pretrain.pth.tar", "clip", "quick_gelu"),
    ("open_clip_vitb16_pretrain.pth.tar", "clip", "gelu"),
)
LORA = "ensemble_lora"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
GET = (
    "unzip DreamSim's dreamsim_ensemble_checkpoint.zip there and put DINO's "
    "dino_vitbase16_pretrain.pth in its checkpoints/ (what dreamsim(cache_dir=...) downloads)"
)


def required_files(folder: Path) -> list[Path]:
    lora = folder / LORA
    return [folder / name for name, _, _ in TOWERS] + [lora / "adapter_config.json"]


def _adapter_file(folder: Path) -> Path | None:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (folder / LORA / name).is_file():
            return folder / LORA / name
    return None


def _tower_state(path: Path) -> dict[str, Any]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def merge_lora(towers: list[dict[str, Any]], adapter: dict[str, Any], scale: float) -> None:
    """Add each LoRA pair's B @ A * alpha / r to its tower weight (in place)."""
    pattern = re.compile(r"extractor_list\.(\d+)\.model\.(.+)\.lora_A(?:\.default)?\.weight$")
    pairs = 0
    for key, down in adapter.items():
        match = pattern.search(key)
        if not match:
            continue
        tower, module = int(match.group(1)), match.group(2)
        up = adapter[key.replace("lora_A", "lora_B")]
        target = f"{module}.weight"
        if tower >= len(towers) or target not in towers[tower]:
            raise DwmDataError(f"DreamSim LoRA names {target} of tower {tower}, which has none")
        towers[tower][target] = towers[tower][target] + (up.float() @ down.float()) * scale
        pairs += 1
    if not pairs:
        raise DwmDataError("the DreamSim LoRA file holds no lora_A/lora_B pairs")


def _blocks(state: dict[str, Any]) -> int:
    return 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))


def _block_weights(state: dict[str, Any], i: int, names: dict[str, str]) -> dict[str, Any]:
    """One DINO-style block under transformers' names; the fused qkv is split in three."""
    src = f"blocks.{i}."
    out: dict[str, Any] = {}
    for part in ("weight", "bias"):
        q, k, v = state[f"{src}attn.qkv.{part}"].chunk(3)
        out.update({f"{names['q']}.{part}": q, f"{names['k']}.{part}": k})
        out[f"{names['v']}.{part}"] = v
        for dino, hf in (
            ("attn.proj", names["o"]),
            ("norm1", names["norm1"]),
            ("norm2", names["norm2"]),
            ("mlp.fc1", names["fc1"]),
            ("mlp.fc2", names["fc2"]),
        ):
            out[f"{hf}.{part}"] = state[f"{src}{dino}.{part}"]
    return out


def dino_tower(state: dict[str, Any], act: str):
    """DINO's ViT as transformers' `ViTModel` (eps 1e-6, exact GELU)."""
    from transformers import ViTConfig, ViTModel

    width, depth = state["cls_token"].shape[-1], _blocks(state)
    config = ViTConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=width // HEAD_DIM,
        intermediate_size=state["blocks.0.mlp.fc1.weight"].shape[0],
        image_size=SIZE,
        patch_size=state["patch_embed.proj.weight"].shape[-1],
        hidden_act=act,
        layer_norm_eps=1e-6,
        qkv_bias=True,
    )
    model = ViTModel(config, add_pooling_layer=False)
    weights = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    for i in range(depth):
        p = f"layers.{i}."
        names = {
            "q": f"{p}attention.q_proj",
            "k": f"{p}attention.k_proj",
            "v": f"{p}attention.v_proj",
            "o": f"{p}attention.o_proj",
            "norm1": f"{p}layernorm_before",
            "norm2": f"{p}layernorm_after",
            "fc1": f"{p}mlp.fc1",
            "fc2": f"{p}mlp.fc2",
        }
        weights.update(_block_weights(state, i, names))
    model.load_state_dict(weights)
    return model


def clip_tower(state: dict[str, Any], act: str):
    """A CLIP image tower as DreamSim stores it (DINO names, `pos_drop` is CLIP's ln_pre, `proj`
    the projection) as transformers' `CLIPVisionModelWithProjection` (eps 1e-5)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    width, depth = state["cls_token"].shape[-1], _blocks(state)
    if state["patch_embed.proj.bias"].abs().max() > 0:
        raise DwmDataError("a CLIP tower's patch embedding has no bias; this file has one")
    config = CLIPVisionConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=width // HEAD_DIM,
        intermediate_size=state["blocks.0.mlp.fc1.weight"].shape[0],
        image_size=SIZE,
        patch_size=state["patch_embed.proj.weight"].shape[-1],
        projection_dim=state["proj"].shape[1],
        hidden_act=act,
        layer_norm_eps=1e-5,
    )
    model = CLIPVisionModelWithProjection(config)
    v = "vision_model."
    weights = {
        f"{v}embeddings.class_embedding": state["cls_token"].reshape(width),
        f"{v}embeddings.patch_embedding.weight": state["patch_embed.proj.weight"],
        f"{v}embeddings.position_embedding.weight": state["pos_embed"][0],
        f"{v}pre_layrnorm.weight": state["pos_drop.weight"],
        f"{v}pre_layrnorm.bias": state["pos_drop.bias"],
        f"{v}post_layernorm.weight": state["norm.weight"],
        f"{v}post_layernorm.bias": state["norm.bias"],
        "visual_projection.weight": state["proj"].T.contiguous(),
    }
    for i in range(depth):
        p = f"{v}encoder.layers.{i}."
        names = {
            "q": f"{p}self_attn.q_proj",
            "k": f"{p}self_attn.k_proj",
            "v": f"{p}self_attn.v_proj",
            "o": f"{p}self_attn.out_proj",
            "norm1": f"{p}layer_norm1",
            "norm2": f"{p}layer_norm2",
            "fc1": f"{p}mlp.fc1",
            "fc2": f"{p}mlp.fc2",
        }
        weights.update(_block_weights(state, i, names))
    model.load_state_dict(weights, strict=False)  # position_ids is a buffer, not a weight
    return model


class DreamSim:
    """The DreamSim ensemble distance between frames (0: the same, higher: further apart)."""

    def __init__(self, folder: Path, device: str = "cpu"):
        import torch

        missing = [p for p in required_files(folder) if not p.is_file()]
        adapter_file = _adapter_file(folder)
        if adapter_file is None:
            missing.append(folder / LORA / "adapter_model.safetensors")
        if missing:
            names = ", ".join(str(p.relative_to(folder)) for p in missing)
            raise MissingAssetError(f"DreamSim weights ({names})", str(folder), GET)
        config = json.loads((folder / LORA / "adapter_config.json").read_text())
        states = [_tower_state(folder / name) for name, _, _ in TOWERS]
        merge_lora(states, _load_adapter(adapter_file), config["lora_alpha"] / config["r"])
        self.towers = []
        for state, (_, kind, act) in zip(states, TOWERS, strict=True):
            build = dino_tower if kind == "dino" else clip_tower
            self.towers.append(build(state, act).to(device).eval().requires_grad_(False))
        self.device = device
        self.norms = [
            (torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1))
            for mean, std in (IMAGENET, OPENAI_CLIP, OPENAI_CLIP)
        ]

    def embed(self, frames: np.ndarray):
        """(F, H, W, 3) uint8 to (F, D) centred unit-length embeddings."""
        import torch

        x = resize(frames).to(self.device)
        parts = []
        with torch.no_grad():
            for tower, (mean, std) in zip(self.towers, self.norms, strict=True):
                pixels = (x - mean.to(x)) / std.to(x)
                if hasattr(tower, "visual_projection"):
                    parts.append(tower(pixel_values=pixels).image_embeds)
                else:
                    hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
                    parts.append(hidden[-1][:, 0])
        embed = torch.cat(parts, dim=-1)
        embed = embed - embed.mean(dim=1, keepdim=True)
        return embed / embed.norm(dim=1, keepdim=True)

    def __call__(self, a: np.ndarray, b: np.ndarray, batch: int = 8) -> float:
        import torch

        if a.shape != b.shape:
            raise DwmDataError(f"videos to compare differ in shape: {a.shape}, {b.shape}")
        distances = []
        for i in range(0, len(a), batch):
            ea, eb = self.embed(a[i : i + batch]), self.embed(b[i : i + batch])
            distances.append(1 - torch.nn.functional.cosine_similarity(ea, eb, dim=-1))
        return float(torch.cat(distances).mean())


def resize(frames: np.ndarray):
    """Frames to (F, 3, 224, 224) in [0, 1] with PIL's bicubic filter, as DreamSim's
    preprocessing (torchvision's Resize on PIL images is PIL's resize)."""
    import torch
    from PIL import Image

    out = [
        np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        for f in frames
    ]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def _load_adapter(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
