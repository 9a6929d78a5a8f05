"""`dwm-data encode`: VAE moments and prompt embeddings stored next to the shards, once.

For `<dir>/x.tar` the cache is `<dir>/latents/x.tar`, a WebDataset shard with the same keys whose
`latents.safetensors` member holds the moments of the three videos (mean | logvar, as the official
`encode_with_cogvideox.py` keeps them) and the prompt embedding. `latents/cache.json` records what
the cache was made with; training uses the cache only when it matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dwm_data.recipe import Recipe
from dwm_model.config import TrainConfig, check_geometry
from dwm_model.data import (
    CACHE_MEMBER,
    CACHE_RECORD,
    EMPTY_PROMPT,
    cache_fingerprint,
    cache_folder,
    cache_shard,
    make_loader,
    tensor_bytes,
    video_decoder,
)


@dataclass
class EncodeResult:
    shards: int
    samples: int
    skipped: int


def encode_shards(
    shards: list[Path], recipe: Recipe, base_folder: Path, batch_size: int = 1
) -> EncodeResult:
    """Encode every sample of every shard; a shard's cache is written whole or not at all."""
    import webdataset as wds
    from safetensors.torch import save_file

    from dwm_model.base import Base

    video = recipe.video
    cfg = recipe.section("train", TrainConfig)
    check_geometry(video.frames, video.width, video.height)
    base = Base(base_folder)
    fingerprint = cache_fingerprint(
        base_folder, video.frames, video.width, video.height, cfg.max_text_length
    )
    stage = video_decoder(video.frames, video.width, video.height)
    samples = skipped = 0
    for shard in shards:
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
        (folder / CACHE_RECORD).write_text(json.dumps(record, indent=2))
    return EncodeResult(len(shards), samples, skipped)
