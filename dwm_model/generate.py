"""Sampling the world model: a static video, a hand video and a prompt in, the interaction out.

The base's sampler (CogVideoX: its `CogVideoXDDIMScheduler`, v-prediction; Wan: flow-matching
Euler) with classifier-free guidance on the prompt only (the unconditional branch gets the base's
official negative prompt: none for CogVideoX, "bad detailed" for Wan), and the conditions built
as the official inference builds them (snuvclab/dwm `inference.py` and its pipeline): an
all-zero mask video (every pixel known), the static video's
latent mean, a random sample of the hand video's latent distribution, both branches seeing the
same conditions. Navigation only (no hand) encodes an all-black hand video: the model has seen
frames without hands, never zeroed hand latents. Dropping the prompt samples unconditionally on
text.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dwm_data.errors import DwmDataError
from dwm_model.config import check_geometry

if TYPE_CHECKING:
    from dwm_data.recipe import VideoConfig
    from dwm_data.video import Source


class WorldModel:
    """A base model with trained DWM weights (ours or the official release), ready to sample;
    everything base-specific goes through its backbone (`dwm_model.backbone`)."""

    def __init__(
        self, base_folder: Path, weights: Path | None = None, condition_channels: int = 16
    ):
        import torch

        from dwm_model.backbone import open_backbone

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.base = base = open_backbone(base_folder, device, dtype)
        self.transformer = base.world_transformer(condition_channels)
        self.text_length = base.text_length
        if weights is not None:
            settings = base.adapter_settings(weights)
            targets = tuple(settings.get("targets", base.lora_targets))
            base.add_lora(self.transformer, settings["rank"], settings["alpha"], targets, ())
            base.load_weights(self.transformer, weights)
            self.text_length = settings.get("text_length", self.text_length)
        self.transformer.eval()

    @classmethod
    def from_pretrained(cls, weights: Path, base_folder: Path | None = None) -> WorldModel:
        """Weights of a run (its base model is on record) or any folder holding the official
        weight files of a base (then `base_folder` names the base)."""
        from dwm_model.model import ADAPTER_FILE

        record = weights / ADAPTER_FILE
        base = base_folder or (
            json.loads(record.read_text()).get("base_model") if record.is_file() else None
        )
        if base is None:
            raise DwmDataError(f"{weights} does not record its base model; pass --base-model")
        return cls(Path(base), weights)

    from_weights = from_pretrained  # the name the CLI has always used

    def save_pretrained(self, folder: Path, record: dict[str, Any]) -> None:
        """The weight files in the base's official layout, plus our adapter record. The base's
        fully trained layers are marked for the non-LoRA file only while it is written."""
        import re

        marked = [
            param
            for name, param in self.transformer.named_parameters()
            if "lora" not in name and not param.requires_grad
            and any(re.search(p, name) for p in self.base.trainable_patterns)
        ]  # fmt: skip
        for param in marked:
            param.requires_grad_(True)
        try:
            full = {"base_model": str(self.base.folder), **record}
            self.base.save_weights(self.transformer, folder, full)
        finally:
            for param in marked:
                param.requires_grad_(False)

    def generate(
        self,
        static: np.ndarray,
        hand: np.ndarray,
        prompt: str,
        steps: int = 50,
        guidance: float = 6.0,
        seed: int = 42,
        use_hand: bool = True,
        use_prompt: bool = True,
        sampler: str = "",
        clip_image: np.ndarray | None = None,
    ) -> np.ndarray:
        """(F, H, W, 3) uint8 static and hand videos to the generated interaction video.

        One generator seeded with `seed` draws the initial noise, then the hand latents (the
        official code draws the noise from its seeded generator and the latent sample from
        torch's global one); the official batch inference seeds sample i with seed + i.
        `clip_image`, an (H, W, 3) uint8 frame, is the CLIP image condition of a base that has
        one (Wan InP); without it such a base sees zeroed CLIP features, as officially."""
        import torch

        if static.shape != hand.shape:
            raise DwmDataError(f"static video is {static.shape}, hand video is {hand.shape}")
        check_geometry(static.shape[0], static.shape[2], static.shape[1])
        base = self.base
        generator = torch.Generator().manual_seed(seed)
        static_lat = self._encode(static)
        latents = torch.randn(static_lat.shape, generator=generator).to(base.device)
        hand_lat = self._encode(hand if use_hand else np.zeros_like(hand), generator)
        mask = base.inference_mask(static.shape, static_lat.shape)
        guided = use_prompt and guidance > 1.0
        texts = ([base.negative_prompt] if guided else []) + [prompt if use_prompt else ""]
        embeds = base.encode_prompts(texts, self.text_length)
        branches = len(texts)
        static_lat, hand_lat, mask = (
            condition.repeat(branches, *[1] * (condition.dim() - 1))
            for condition in (static_lat, hand_lat, mask)
        )
        extra = {}
        if clip_image is not None:
            if not hasattr(base, "encode_image"):
                raise DwmDataError(f"the {base.kind} base has no CLIP image condition")
            extra["image"] = base.encode_image(clip_image).repeat(branches, 1, 1)

        def guided_output(model_in, t):
            output = base.predict(
                self.transformer,
                model_in.repeat(branches, *[1] * (model_in.dim() - 1)).to(base.dtype),
                static_lat,
                hand_lat,
                embeds,
                t.expand(branches),
                mask=mask,
                **extra,
            ).float()
            if guided:
                uncond, cond = output.chunk(2)
                output = uncond + guidance * (cond - uncond)
            return output

        with torch.no_grad():
            latents = base.denoise(latents, steps, guided_output, sampler)
        return decoded_frames(base.decode_latents(latents)[0])

    def _encode(self, frames: np.ndarray, generator=None):
        """[1, ...] model-layout latents of a video: a sample of the VAE's distribution when a
        generator is given (the hand video, as the official pipeline), else its mean (the static
        video, which the official pipeline encodes as the InP "masked video", by its mode, with
        no noise added: its transformer class drops the base config's add_noise_in_inpaint_model)."""
        from dwm_model.data import to_tensor

        moments = self.base.encode_moments(to_tensor(frames)[None])
        return self.base.latents(moments, generator, mode=generator is None)


def decoded_frames(video) -> np.ndarray:
    """The VAE's [3, F, H, W] output in [-1, 1] to (F, H, W, 3) uint8 as the official inference
    writes it: x / 2 + 0.5 clamped to [0, 1], times 255, truncated (diffusers' `export_to_video`),
    so a generated video has the official bytes for the same latents."""
    import torch

    array = ((video.float() / 2 + 0.5).clamp(0, 1) * 255).to(torch.uint8)
    return array.permute(1, 2, 3, 0).cpu().numpy()


def to_frames(video) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] made by `data.to_tensor` back to its (F, H, W, 3) uint8 frames
    (rounded, so the round trip is exact)."""
    array = ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(1, 2, 3, 0).cpu().numpy()


def write_video(path: Path, frames: np.ndarray, fps: Fraction | int) -> None:
    """An mp4 written to a temporary name and renamed, so a crash leaves no half file."""
    from dwm_data.video import Codec, encode

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(encode(frames, fps, Codec()))
    partial.rename(path)


def preview(*videos: np.ndarray) -> np.ndarray:
    """Side by side, left to right in the order given (static | hand | generated | truth)."""
    return np.concatenate(videos, axis=2)


class Inputs(NamedTuple):
    static: np.ndarray
    hand: np.ndarray
    prompt: str
    truth: np.ndarray | None
    # One line per video that had to be fitted to the recipe's geometry, for the user.
    fitted: tuple[str, ...] = ()


def load_inputs(
    shards: list[Path] | None,
    key: str | None,
    static: Path | None,
    hand: Path | None,
    prompt: str | None,
    video: VideoConfig,
) -> Inputs:
    """(static, hand, prompt, truth) at the recipe's geometry `video`, from a shard key or from
    two video files and a prompt. A shard sample is read as train and eval read it (so `sample
    --key` and `eval` hand the model the same frames); files are fitted as `import-dwm` fits a
    clip (`fit_video`)."""
    if key is not None:
        return _shard_inputs(shards or [], key, prompt, video)
    if static is None or hand is None:
        raise DwmDataError("give --key with shards, or --static and --hand videos")
    frames, fitted = {}, []
    for name, source in (("static", static), ("hand", hand)):
        frames[name], note = fit_video(source, video)
        if note:
            fitted.append(f"{name}: {note}")
    return Inputs(frames["static"], frames["hand"], prompt or "", None, tuple(fitted))


def _shard_inputs(shards: list[Path], key: str, prompt: str | None, video: VideoConfig) -> Inputs:
    from dwm_data.store import read_samples
    from dwm_data.video import probe
    from dwm_model.data import video_decoder

    sample = next((s for s in read_samples(shards, validate=False) if s.key == key), None)
    if sample is None:
        raise DwmDataError(f"no sample with key {key} in the shards")
    stage = video_decoder(video.frames, video.width, video.height, video.resize)
    loaded = next(iter(stage([sample.to_wds()])), None)
    if loaded is None:
        raise DwmDataError(f"sample {key} cannot be read at the recipe's geometry (see above)")
    info = probe(sample.video)
    fitted = ()
    if (info.frames, info.width, info.height) != (video.frames, video.width, video.height):
        fitted = (
            f"{key}: {info.width}x{info.height}, {info.frames} frames -> the recipe's "
            f"{video.width}x{video.height}, {video.frames} frames, as train and eval read it",
        )
    static, hand, truth = (to_frames(loaded[name]) for name in ("static", "hand", "video"))
    return Inputs(static, hand, sample.prompt if prompt is None else prompt, truth, fitted)


def fit_video(source: Source, video: VideoConfig) -> tuple[np.ndarray, str | None]:
    """A video at the recipe's frame count, size and rate, and what was changed (None if
    nothing): resampled to the recipe's fps from its first frame and scaled to its size with its
    `resize` rule, as `import-dwm -r` fits a clip, so a file and its imported sample give the
    model the same frames (the model would otherwise run at whatever size it is handed)."""
    from dwm_data.video import decode, probe, read_clip

    info = probe(source)
    if info.matches(video.frames, video.width, video.height, video.rate, info.codec):
        return decode(source), None
    frames, _ = read_clip(source, video.frames, video.rate, video.width, video.height, video.resize)
    note = (
        f"{info.width}x{info.height}, {info.frames} frames at {float(info.fps):g} fps -> the "
        f"recipe's {video.width}x{video.height}, first {video.frames} frames at "
        f"{float(video.rate):g} fps ({video.resize})"
    )
    return frames, note
