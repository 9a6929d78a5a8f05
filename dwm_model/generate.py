"""Sampling the world model: a static video, a hand video and a prompt in, the interaction out.

DDIM (the base model's `CogVideoXDDIMScheduler`, v-prediction) with classifier-free guidance on
the prompt only, as the official inference: both branches see the same static, hand and mask
conditions. Dropping the hand (zero hand latents) gives navigation-only simulation; dropping the
prompt samples unconditionally on text.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from dwm_data.errors import DwmDataError
from dwm_model.config import check_geometry


class WorldModel:
    """A base model with trained DWM weights (ours or the official release), ready to sample."""

    def __init__(
        self, base_folder: Path, weights: Path | None = None, condition_channels: int = 16
    ):
        import torch

        from dwm_model.base import Base
        from dwm_model.model import adapter_settings, add_lora, load_weights, load_world_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.base = Base(base_folder, device, dtype)
        self.transformer = load_world_model(self.base, condition_channels)
        self.text_length = 226
        if weights is not None:
            settings = adapter_settings(weights)
            targets = tuple(settings.get("targets", ("to_k", "to_q", "to_v", "to_out.0")))
            add_lora(self.transformer, settings["rank"], settings["alpha"], targets, ())
            load_weights(self.transformer, weights)
            self.text_length = settings.get("text_length", self.text_length)
        self.transformer.eval()

    @classmethod
    def from_weights(cls, weights: Path, base_folder: Path | None = None) -> WorldModel:
        """Weights of a run (its base model is on record) or any folder holding the two files."""
        from dwm_model.model import adapter_settings

        base = base_folder or adapter_settings(weights).get("base_model")
        if base is None:
            raise DwmDataError(f"{weights} does not record its base model; pass --base-model")
        return cls(Path(base), weights)

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
    ) -> np.ndarray:
        """(F, H, W, 3) uint8 static and hand videos to the generated interaction video."""
        import torch

        from dwm_model.base import latents_from_moments
        from dwm_model.data import to_tensor
        from dwm_model.model import predict

        if static.shape != hand.shape:
            raise DwmDataError(f"static video is {static.shape}, hand video is {hand.shape}")
        check_geometry(static.shape[0], static.shape[2], static.shape[1])
        base, scaling = self.base, self.base.scaling_factor
        conditions = []
        for frames in (static, hand):
            moments = base.encode_moments(to_tensor(frames)[None])
            conditions.append(latents_from_moments(moments, scaling, mode=True))
        static_lat, hand_lat = conditions
        if not use_hand:
            hand_lat = torch.zeros_like(hand_lat)
        guided = use_prompt and guidance > 1.0
        texts = ([""] if guided else []) + [prompt if use_prompt else ""]
        embeds = base.encode_prompts(texts, self.text_length)
        branches = len(texts)
        static_lat, hand_lat = (
            static_lat.repeat(branches, 1, 1, 1, 1),
            hand_lat.repeat(branches, 1, 1, 1, 1),
        )
        scheduler = base.scheduler
        scheduler.set_timesteps(steps, device=base.device)
        generator = torch.Generator().manual_seed(seed)
        latents = torch.randn(conditions[0].shape, generator=generator).to(base.device)
        latents = latents * scheduler.init_noise_sigma
        with torch.no_grad():
            for t in scheduler.timesteps:
                model_in = scheduler.scale_model_input(latents.repeat(branches, 1, 1, 1, 1), t)
                velocity = predict(
                    self.transformer,
                    model_in.to(base.dtype),
                    static_lat,
                    hand_lat,
                    embeds,
                    t.expand(branches),
                    scaling,
                ).float()
                if guided:
                    uncond, cond = velocity.chunk(2)
                    velocity = uncond + guidance * (cond - uncond)
                latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        video = base.decode_latents(latents)[0]
        return to_frames(video)


def to_frames(video) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] to (F, H, W, 3) uint8."""
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


def load_inputs(
    shards: list[Path] | None,
    key: str | None,
    static: Path | None,
    hand: Path | None,
    prompt: str | None,
) -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
    """(static, hand, prompt, truth) from a shard key or from two video files and a prompt."""
    from dwm_data.video import decode

    if key is not None:
        from dwm_data.store import read_samples

        for sample in read_samples(shards or [], validate=False):
            if sample.key == key:
                return (
                    decode(sample.static),
                    decode(sample.hand),
                    sample.prompt if prompt is None else prompt,
                    decode(sample.video),
                )
        raise DwmDataError(f"no sample with key {key} in the shards")
    if static is None or hand is None:
        raise DwmDataError("give --key with shards, or --static and --hand videos")
    return decode(static), decode(hand), prompt or "", None
