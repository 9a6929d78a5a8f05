"""`dwm-data encode`: VAE moments and prompt embeddings stored next to the shards, once.

For `<dir>/x.tar` the cache is `<dir>/latents/x.tar`, a WebDataset shard with the same keys whose
`latents.safetensors` member holds the moments of the three videos (mean | logvar, as the official
`encode_with_cogvideox.py` keeps them) and the prompt embedding. `latents/x.json` records what
it was made with; training uses the caches only when all of them match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dwm_data.recipe import Recipe
from dwm_model.config import TrainConfig, check_geometry
from dwm_model.data import (
    CACHE_MEMBER,
    EMPTY_PROMPT,
    cache_fingerprint,
    cache_folder,
    cache_record,
    cache_shard,
    cached_shards,
    make_loader,
    tensor_bytes,
    video_decoder,
)


@dataclass
class EncodeResult:
    shards: int
    samples: int
    skipped: int
    reused: int  # shards whose cache was already there, made with the same models and geometry


def encode_shards(
    shards: list[Path], recipe: Recipe, base_folder: Path, batch_size: int = 1
) -> EncodeResult:
    """Encode every sample of the shards not cached yet; a shard's cache is written whole or
    not at all, so an interrupted run is finished by running it again."""
    import torch
    import webdataset as wds
    from safetensors.torch import save_file

    from dwm_model.backbone import open_backbone

    video = recipe.video
    cfg = recipe.section("train", TrainConfig)
    check_geometry(video.frames, video.width, video.height)
    cuda = torch.cuda.is_available()
    base = open_backbone(
        base_folder, "cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32
    )
    fingerprint = cache_fingerprint(
        base_folder, video.frames, video.width, video.height, cfg.max_text_length
    )
    stage = video_decoder(video.frames, video.width, video.height, video.resize)
    samples = skipped = reused = 0
    for shard in shards:
        if cached_shards([shard], fingerprint):
            reused += 1
            continue
        target = cache_shard(shard)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".tar.tmp")
        with wds.TarWriter(str(partial)) as writer:
            for batch in make_loader([str(shard)], stage, batch_size, train=False):
                skipped += batch["skipped"]
                embeds = base.encode_prompts(batch["prompt"], cfg.max_text_length)
                moments = {
                    name: base.encode_moments(batch[name]) for name in ("video", "static", "hand")
                }
                for i, key in enumerate(batch["key"]):
                    tensors = {name: m[i].cpu() for name, m in moments.items()}
                    tensors["prompt_embeds"] = embeds[i].cpu()
                    writer.write(
                        {
                            "__key__": key,
                            CACHE_MEMBER: tensor_bytes(tensors),
                            "txt": batch["prompt"][i],
                        }
                    )
                    samples += 1
        partial.rename(target)
        folder = cache_folder(shard)
        save_file(
            {"prompt_embeds": base.encode_prompts([""], cfg.max_text_length)[0].cpu().contiguous()},
            str(folder / EMPTY_PROMPT),
        )
        record = {"fingerprint": fingerprint, "base_model": str(base_folder)}
        cache_record(shard).write_text(json.dumps(record, indent=2))
    return EncodeResult(len(shards), samples, skipped, reused)
