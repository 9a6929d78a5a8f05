"""Shards to batches with plain `webdataset`, safe on many nodes.

Training streams `resampled=True` shards (each rank and worker draws its own shards with
replacement, seeded by rank and worker) with no node splitter and a fixed number of batches per
worker, so uneven shard counts can never starve one rank and hang an all-reduce. Evaluation and
encoding read every shard once, split by node and worker. Clips longer or larger than the
recipe's are windowed and resized on load. A broken sample (corrupt video, missing member, fewer
frames than the recipe) is skipped and counted: the count rides on the next good sample, so it
reaches the trainer from any worker process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dwm_data.errors import DwmDataError
from dwm_data.extras import require

log = logging.getLogger(__name__)
CACHE_DIR = "latents"
CACHE_MEMBER = "latents.safetensors"
EMPTY_PROMPT = "empty_prompt.safetensors"
# A resampled stream never ends: this many broken samples in a row means none will ever load
# (e.g. shards of another size than the recipe's), so the run stops instead of spinning.
GIVE_UP_AFTER = 200


def _give_up(skipped: int, exc: Exception) -> None:
    if skipped >= GIVE_UP_AFTER:
        raise DwmDataError(f"{skipped} samples in a row could not be loaded; the last: {exc}")


def to_tensor(frames):
    """(F, H, W, 3) uint8 to (3, F, H, W) float in [-1, 1]."""
    import torch

    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def window(available: int, frames: int) -> list[int]:
    """The frames a clip of `available` frames gives a recipe of `frames`: every
    (available // frames)-th from the first, the official loader's stride (its `n // 49`)."""
    if available < frames:
        raise DwmDataError(f"clip has {available} frames, recipe wants {frames}")
    step = available // frames
    return list(range(0, step * frames, step))


def video_decoder(
    frames: int, width: int, height: int, resize: str = "letterbox"
) -> Callable[[Iterable[dict]], Iterator[dict]]:
    """A pipeline stage from raw tar members to decoded triplets of the recipe's geometry.

    Clips of the recipe's geometry decode as they are; longer or larger ones (shards imported
    with another recipe) give a recipe-sized window, fitted to the recipe's size by its
    `video.resize` mode, as the official loader resamples every clip to 49 frames at 720x480."""

    def load(data: bytes):
        from dwm_data.video import decode, probe, read_frames

        info = probe(data)
        if (info.frames, info.width, info.height) == (frames, width, height):
            return decode(data, expected_frames=frames)
        return read_frames(data, window(info.frames, frames), width, height, resize)

    def stage(source: Iterable[dict]) -> Iterator[dict]:
        from dwm_data.sample import VIDEO_KEYS, Sample

        skipped = 0
        for members in source:
            key = members.get("__key__", "?")
            try:
                sample = Sample.from_wds(members)
                out = {"key": sample.key, "prompt": sample.prompt}
                for name in VIDEO_KEYS:
                    out[name] = to_tensor(load(getattr(sample, name)))
            except (DwmDataError, ValueError, UnicodeDecodeError) as exc:
                skipped += 1
                log.warning("skipping broken sample %s: %s", key, exc)
                _give_up(skipped, exc)
                continue
            out["skipped"], skipped = skipped, 0
            yield out

    return stage


def shard_geometry(shard: Path) -> tuple[int, int, int] | None:
    """(frames, width, height) of the first interaction video in a shard (None: no video)."""
    import tarfile

    from dwm_data.video import probe

    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".video.mp4"):
                handle = tar.extractfile(member)
                if handle is None:
                    return None
                info = probe(handle.read())
                return info.frames, info.width, info.height
    return None


def geometry_note(shards: list[Path], frames: int, width: int, height: int) -> str | None:
    """One line on how the shards' clips differ from the recipe and what the loader does about
    it (None: they match); raises when no window of the recipe's length fits in a clip."""
    found = shard_geometry(shards[0]) if shards else None
    if found is None or found == (frames, width, height):
        return None
    have = "{} frames at {}x{}".format(*found)
    want = f"{frames} frames at {width}x{height}"
    if found[0] < frames:
        raise DwmDataError(
            f"{shards[0].name} holds clips of {have}, the recipe wants {want}; re-import the "
            f"shards with this recipe, or train with video.frames of at most {found[0]}"
        )
    step = found[0] // frames
    return (
        f"{shards[0].name} holds clips of {have}, the recipe wants {want}: training on "
        f"{frames} frames one in {step} from the first, fitted to {width}x{height} on load "
        f"(re-import the shards with this recipe to save that work)"
    )


def latent_decoder(source: Iterable[dict]) -> Iterator[dict]:
    """A pipeline stage from latent-cache members to moments and prompt embeddings."""
    from safetensors.torch import load

    skipped = 0
    for members in source:
        try:
            tensors = load(members[CACHE_MEMBER])
            out = {"key": members["__key__"], "prompt": members.get("txt", b"").decode("utf-8")}
        except (KeyError, ValueError, RuntimeError) as exc:
            skipped += 1
            log.warning("skipping broken cache entry %s: %s", members.get("__key__", "?"), exc)
            _give_up(skipped, exc)
            continue
        out.update(tensors)
        out["skipped"], skipped = skipped, 0
        yield out


def collate(samples: list[dict]) -> dict[str, Any]:
    import torch

    batch: dict[str, Any] = {
        "key": [s["key"] for s in samples],
        "prompt": [s["prompt"] for s in samples],
    }
    batch["skipped"] = sum(s["skipped"] for s in samples)
    for name in samples[0]:
        if name not in batch:
            batch[name] = torch.stack([s[name] for s in samples])
    return batch


def make_loader(
    urls: list[str],
    stage: Callable[[Iterable[dict]], Iterator[dict]],
    batch_size: int,
    *,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    shuffle_buffer: int = 100,
    batches_per_worker: int | None = None,
):
    """A `WebLoader` over the shards; deterministic for a given seed, rank and worker count."""
    wds = require("webdataset", "train")
    if train:
        if not batches_per_worker:
            raise DwmDataError("a training loader needs batches_per_worker (resampled is endless)")
        stages = [wds.ResampledShards(urls, seed=seed, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=wds.warn_and_continue))
    if train and shuffle_buffer > 1:
        stages.append(wds.detshuffle(shuffle_buffer, initial=shuffle_buffer, seed=seed))
    stages += [stage, wds.batched(batch_size, collation_fn=collate, partial=not train)]
    pipeline = wds.DataPipeline(*stages)
    if train:
        pipeline = pipeline.with_epoch(batches_per_worker)
    return wds.WebLoader(pipeline, batch_size=None, num_workers=num_workers)


def prefetch(batches: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Pull batches on a thread so loading overlaps the training step (torch releases the GIL
    inside its kernels). Order is unchanged, so seeds and resume positions mean the same; an
    error in the loader is raised here, in the trainer's thread."""
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away: let the thread end

    def pull() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(exc)

    thread = threading.Thread(target=pull, name="dwm-prefetch", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def cache_folder(shard: Path) -> Path:
    return shard.parent / CACHE_DIR


def cache_shard(shard: Path) -> Path:
    return cache_folder(shard) / shard.name


def cache_record(shard: Path) -> Path:
    """What one shard's cache was made with (per shard: a folder may hold caches of two runs)."""
    return cache_folder(shard) / f"{shard.stem}.json"


def cache_fingerprint(
    base_folder: Path, frames: int, width: int, height: int, text_length: int
) -> dict:
    """What a latent cache depends on; a cache made under another one is not used."""
    import hashlib

    from dwm_model.backbone import identity

    digest = hashlib.sha256(identity(base_folder))
    return {
        "models": digest.hexdigest()[:16],
        "frames": frames,
        "width": width,
        "height": height,
        "text_length": text_length,
    }


def cached_shards(shards: list[Path], fingerprint: dict) -> list[Path] | None:
    """The cache shards when every shard has one made under `fingerprint`, else None."""
    out = []
    for shard in shards:
        record = cache_record(shard)
        if not cache_shard(shard).is_file() or not record.is_file():
            return None
        if json.loads(record.read_text()).get("fingerprint") != fingerprint:
            return None
        out.append(cache_shard(shard))
    return out


def load_empty_prompt(shard: Path):
    from safetensors.torch import load_file

    return load_file(str(cache_folder(shard) / EMPTY_PROMPT))["prompt_embeds"]


def tensor_bytes(tensors: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()})
