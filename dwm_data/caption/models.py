"""Chat models from local folders, batched: the captioner sees frames, the rewriter text only.
transformers runs anywhere; vLLM (as the official captions were made) when installed with a GPU.

Frames go to the processor as images, never as a video: a processor's video path needs
torchvision, which this install does not carry (transformers' Qwen2-VL, SmolVLM2 and InternVL
processors cannot even be built without it; Idefics3-based SmolVLM folders can).
"""

from __future__ import annotations

import importlib.util
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dwm_data.errors import DwmDataError
from dwm_data.extras import require

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float  # 0: greedy
    repetition_penalty: float = 1.0
    seed: int = 0


def check_folder(folder: Path, what: str, hint: str) -> None:
    """One line when a model folder is missing or is not a transformers folder."""
    if not (folder / "config.json").is_file():
        raise DwmDataError(f"caption: no {what} at {folder} (no config.json there); {hint}")


def check_models(
    vlm: Path, rewriter: Path | None, device: str, engine: str, hints: tuple[str, str]
) -> None:
    """What captioning needs before any unit runs; `hints` say how to give the VLM and the
    rewriter where the caller takes them from (options or the recipe)."""
    check_engine(engine, device)
    check_folder(vlm, "vision-language model", hints[0])
    if rewriter:
        check_folder(rewriter, "rewrite language model", hints[1])
    check_processor(vlm)  # imports transformers: after the cheap checks


def check_processor(folder: Path) -> None:
    """A processor that needs torchvision fails when it is built; say so before any unit runs."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    for name in PROCESSOR_FILES:
        path = folder / name
        if path.is_file():
            try:
                found = json.loads(path.read_text()).get("processor_class")
            except (json.JSONDecodeError, AttributeError) as exc:
                raise DwmDataError(f"caption: {path} is not a JSON object: {exc}") from exc
            if found:
                break
    else:
        return
    cls = getattr(require("transformers", "train"), found, None)
    if cls is not None and "video_processor" in cls.get_attributes():
        raise DwmDataError(
            f"caption: {folder} uses {found}, which transformers builds only with torchvision "
            "(not installed); use an Idefics3 (SmolVLM) folder or install a torchvision "
            "matching torch"
        )


def engine_for(engine: str, device: str) -> str:
    """auto: vLLM when it is installed and there is a GPU (the official captions were served
    with it), else transformers."""
    if engine != "auto":
        return engine
    if device == "cpu" or importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def check_engine(engine: str, device: str) -> None:
    if engine_for(engine, device) != "vllm":
        return
    if importlib.util.find_spec("vllm") is None:
        raise DwmDataError("caption: engine vllm, but vllm is not installed (pip install vllm)")
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        raise DwmDataError("caption: engine vllm runs on a GPU, and there is none here")


def device_and_dtype(device: str) -> tuple[str, Any]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DwmDataError("caption: --device cuda, but torch sees no GPU")
    return device, torch.bfloat16 if device == "cuda" else torch.float32


def load_chat(folder: Path, images: bool, device: str, engine: str, max_images: int) -> ChatModel:
    if engine_for(engine, device) == "vllm":
        return VllmChat(folder, images, max_images)
    return TransformersChat(folder, images, device)


class ChatModel(ABC):
    """A local chat model: a vision-language model (`images=True`) or a causal language model.
    Prompts are written by the folder's own chat template; frames go in as numbered images."""

    engine: ClassVar[str]

    def __init__(self, folder: Path, images: bool):
        transformers = require("transformers", "train")

        self.images = images
        self.name = Path(folder).name
        if images:
            self.processor = transformers.AutoProcessor.from_pretrained(folder)
            self.tokenizer = self.processor.tokenizer
        else:
            self.processor = self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    @abstractmethod
    def generate(
        self, texts: list[str], sampling: Sampling, frames: list[np.ndarray] | None = None
    ) -> list[str]:
        """One answer per text (with its frames, (F, H, W, 3) uint8, for a captioner)."""

    def prompts(self, texts: list[str], frames: list[np.ndarray] | None) -> list[str]:
        return [
            self.processor.apply_chat_template(
                self._messages(text, None if frames is None else len(frames[i])),
                add_generation_prompt=True,
                tokenize=False,
            )
            for i, text in enumerate(texts)
        ]

    def _messages(self, text: str, frames: int | None) -> list[dict[str, Any]]:
        if frames is None:
            return [{"role": "user", "content": text}]
        content: list[dict[str, str]] = []
        for index in range(frames):  # the official prompt numbers the frames
            content += [{"type": "text", "text": f"Frame{index + 1}: "}, {"type": "image"}]
            content.append({"type": "text", "text": "\n"})
        return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


def _images(frames: list[np.ndarray]) -> list[list[Any]]:
    from PIL import Image

    return [[Image.fromarray(frame) for frame in clip] for clip in frames]


class TransformersChat(ChatModel):
    """transformers' `generate`, one padded batch per call (left padding: every row goes on
    from its own end)."""

    engine = "transformers"

    def __init__(self, folder: Path, images: bool, device: str):
        super().__init__(folder, images)
        transformers = require("transformers", "train")
        self.device, dtype = device_and_dtype(device)
        loader = (
            transformers.AutoModelForImageTextToText
            if images
            else transformers.AutoModelForCausalLM
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = loader.from_pretrained(folder, dtype=dtype).to(self.device).eval()

    def encode(self, texts: list[str], frames: list[np.ndarray] | None = None) -> Any:
        """The model's inputs (token ids, mask, pixels), one left-padded row per text."""
        prompts = self.prompts(texts, frames)
        if self.images:
            images = _images(frames or [])
            return self.processor(text=prompts, images=images, return_tensors="pt", padding=True)
        # the chat template wrote the special tokens already
        return self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def generate(
        self, texts: list[str], sampling: Sampling, frames: list[np.ndarray] | None = None
    ) -> list[str]:
        import torch

        inputs = self.encode(texts, frames).to(self.device)
        torch.manual_seed(sampling.seed)
        sample = sampling.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=1.0 if sample else None,
                top_k=None,
                repetition_penalty=sampling.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        answers = out[:, inputs["input_ids"].shape[1] :]
        return [
            text.strip() for text in self.tokenizer.batch_decode(answers, skip_special_tokens=True)
        ]


class VllmChat(ChatModel):
    """vLLM's offline engine on the GPU: the whole batch in one `generate`, scheduled by vLLM."""

    engine = "vllm"

    def __init__(self, folder: Path, images: bool, max_images: int):
        super().__init__(folder, images)
        import vllm  # checked in preflight: installed, with a GPU

        limits = {"limit_mm_per_prompt": {"image": max_images}} if images else {}
        self.vllm = vllm
        self.llm = vllm.LLM(model=str(folder), **limits)

    def generate(
        self, texts: list[str], sampling: Sampling, frames: list[np.ndarray] | None = None
    ) -> list[str]:
        prompts: list[Any] = self.prompts(texts, frames)
        if self.images:
            prompts = [
                {"prompt": prompt, "multi_modal_data": {"image": images}}
                for prompt, images in zip(prompts, _images(frames or []), strict=True)
            ]
        params = self.vllm.SamplingParams(
            temperature=sampling.temperature,
            max_tokens=sampling.max_new_tokens,
            repetition_penalty=sampling.repetition_penalty,
            seed=sampling.seed,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [output.outputs[0].text.strip() for output in outputs]
