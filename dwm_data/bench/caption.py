"""Seconds per clip of `caption` on this CPU with the tiny random models of
`dwm_data.fixtures.caption` (the real Idefics3 and Llama classes and processors), at the official
clip size and frame count: one clip per generate call against batches of `caption.batch_size`,
with the frame decoding and the rewrite apart. The prompt's token count is printed too: with it,
docs/captions.md turns these into the cost of a real model on a GPU."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from dwm_data.bench import timed
from dwm_data.caption.captioner import Captioner, hints_of, sample_frames
from dwm_data.caption.options import CaptionSection
from dwm_data.fixtures.caption import write_tiny_lm, write_tiny_vlm
from dwm_data.fixtures.dwm_layout import synthetic_triplet
from dwm_data.recipe import load_recipe
from dwm_data.sample import Sample, make_sample
from dwm_data.video import Codec

NEW_TOKENS = 32  # a real caption is a few hundred; random weights rarely stop early


def _clips(count: int, frames: int, width: int, height: int, fps: int) -> list[Sample]:
    codecs = {name: Codec(preset="ultrafast") for name in ("video", "static", "hand")}
    return [
        make_sample(
            f"bench-{i:05d}",
            synthetic_triplet(frames, width, height, seed=i),
            fps,
            codecs,
            "A right hand pushes the box across the wooden table.",
            {"source": {"name": "bench"}},
        )
        for i in range(count)
    ]


def main(quick: bool = False) -> list[tuple[str, str]]:
    import torch
    from transformers.utils import logging

    logging.disable_progress_bar()  # loading bars of the three model loads
    recipe = load_recipe("dwm")
    video, official = recipe.video, recipe.section("caption", CaptionSection)
    frames, width, height = (17, 320, 240) if quick else (video.frames, video.width, video.height)
    count, repeats = (4, 1) if quick else (8, 3)
    settings = official.model_copy(
        update={
            "max_new_tokens": NEW_TOKENS,
            "temperature": 0.0,
            "rewrite_max_new_tokens": NEW_TOKENS,
            "rewrite_temperature": 0.0,
            "rewrite_tries": 1,
        }
    )
    clips = _clips(count, frames, width, height, int(video.rate))
    torch.set_num_threads(1)  # a worker's share of a shared machine
    with tempfile.TemporaryDirectory(prefix="dwm-bench-caption-") as scratch:
        vlm, lm = write_tiny_vlm(Path(scratch, "vlm")), write_tiny_lm(Path(scratch, "lm"))
        one = Captioner(settings.model_copy(update={"batch_size": 1}), vlm, device="cpu")
        batched = Captioner(settings, vlm, device="cpu")
        rewriting = Captioner(settings, vlm, lm, device="cpu")
        quiet = lambda message: None  # noqa: E731

        def per_clip(captioner: Captioner) -> float:
            seconds = [timed(lambda: captioner.caption_all(clips, quiet)) for _ in range(repeats)]
            return statistics.median(seconds) / count

        decode = statistics.median(
            timed(lambda: [sample_frames(c, settings.frames) for c in clips])
            for _ in range(repeats)
        )
        one_s, batched_s, rewrite_s = per_clip(one), per_clip(batched), per_clip(rewriting)
        prompt_tokens, image_tokens = _prompt_tokens(one, clips[0], settings.frames)
    size = f"{frames} frames {width}x{height}, {settings.frames} sampled"
    return [
        (f"clips ({size})", str(count)),
        ("VLM prompt tokens per clip (of them image tokens)", f"{prompt_tokens} ({image_tokens})"),
        ("decode + sample frames, per clip", f"{decode / count * 1e3:.0f} ms"),
        (f"VLM, one clip per call, {NEW_TOKENS} new tokens, per clip", f"{one_s:.2f} s"),
        (f"VLM, batches of {settings.batch_size}, per clip", f"{batched_s:.2f} s"),
        ("batching speed-up", f"{one_s / batched_s:.1f}x"),
        (f"VLM + rewrite ({NEW_TOKENS} new tokens, 1 try), per clip", f"{rewrite_s:.2f} s"),
    ]


def _prompt_tokens(captioner: Captioner, clip: Sample, frames: int) -> tuple[int, int]:
    """What the processor makes of one clip's prompt: all tokens, and the image tokens."""
    chat = captioner.vlm
    ids = chat.encode([captioner.prompt(hints_of(clip))], [sample_frames(clip, frames)])
    ids = ids["input_ids"][0]
    image = chat.model.config.image_token_id
    return len(ids), int((ids == image).sum())
