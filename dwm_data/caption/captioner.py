"""Captioning a batch of samples: the step itself, apart from any run, so that a builder can
caption its own samples (`Captioner(...).caption(samples)`) as `dwm-data caption` does.

The videos, camera and hands are the input's bytes; only the prompt changes, and `json` records
what it was (`caption.hints`), the raw caption, the rewrite, the models and the settings
(templates included). Hints are always the source's own prompt: a sample captioned before is
captioned again from its first hints, never from a generated caption.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.caption.options import CaptionSection
from dwm_data.errors import UnitError
from dwm_data.sample import Sample


class Captioner:
    """The models, loaded once; `vlm=None` keeps the source's prompts (`--captioner labels`)."""

    def __init__(
        self,
        settings: CaptionSection,
        vlm: Path | None,
        rewriter: Path | None = None,
        device: str = "auto",
        engine: str = "auto",
    ):
        from dwm_data.caption.models import load_chat

        self.settings = settings
        self.vlm = self.rewriter = None
        if vlm:
            self.vlm = load_chat(vlm, True, device, engine, settings.frames)
            if rewriter:
                self.rewriter = load_chat(rewriter, False, device, engine, 0)

    def caption(self, batch: list[Sample]) -> list[Sample]:
        """The batch with new prompts, in one generate call per model (and rewrite try)."""
        hints = [hints_of(sample) for sample in batch]
        if self.vlm is None:
            return [
                relabel(sample, hint, {"captioner": "labels", "hints": hint})
                for sample, hint in zip(batch, hints, strict=True)
            ]
        from dwm_data.caption.models import Sampling

        cfg = self.settings
        raws = self.vlm.generate(
            [self.prompt(hint) for hint in hints],
            Sampling(cfg.max_new_tokens, cfg.temperature, cfg.repetition_penalty, cfg.seed),
            [sample_frames(sample, cfg.frames) for sample in batch],
        )
        for sample, raw in zip(batch, raws, strict=True):
            if not raw:
                raise UnitError("caption", f"{sample.key}: the captioner wrote nothing")
        rewrites = self._rewrite(raws) if self.rewriter else [None] * len(batch)
        out = []
        for sample, hint, raw, rewrite in zip(batch, hints, raws, rewrites, strict=True):
            record = {
                "captioner": "vlm",
                "hints": hint,
                "raw": raw,
                "vlm": self.vlm.name,
                "rewriter": self.rewriter.name if self.rewriter else None,
                "engine": self.vlm.engine,
                "settings": cfg.record(),
            }
            if rewrite is not None:
                record["rewrite"] = rewrite
            out.append(relabel(sample, (rewrite or {}).get("text") or raw, record))
        return out

    def caption_all(self, samples: list[Sample], heartbeat: Callable[[str], None]) -> list[Sample]:
        """The samples with new prompts, `batch_size` to a generate call."""
        size, out = self.settings.batch_size, []
        for start in range(0, len(samples), size):
            batch = samples[start : start + size]
            heartbeat(f"captioning {batch[0].key} ({start + len(batch)}/{len(samples)})")
            out += self.caption(batch)
        return out

    def prompt(self, hints: str) -> str:
        cfg, hints = self.settings, hints.strip()
        return cfg.template + (cfg.hint_template.replace("{hints}", hints) if hints else "")

    def _rewrite(self, captions: list[str]) -> list[dict[str, Any]]:
        """The official rewrite: ask again until the answer parses as the JSON it was told to
        write; a caption whose answers never parse keeps its raw text (recorded)."""
        from dwm_data.caption.models import Sampling

        assert self.rewriter is not None
        cfg = self.settings
        texts = [cfg.rewrite_template.replace("{caption}", c) for c in captions]
        results: list[dict[str, Any]] = [{"text": None, "tries": 0} for _ in captions]
        todo = list(range(len(captions)))
        for attempt in range(cfg.rewrite_tries):
            if not todo:
                break
            sampling = Sampling(
                cfg.rewrite_max_new_tokens, cfg.rewrite_temperature, 1.0, cfg.seed + attempt
            )
            answers = self.rewriter.generate([texts[i] for i in todo], sampling)
            for index, answer in zip(todo, answers, strict=True):
                text = parse_rewrite(answer, cfg.rewrite_key)
                results[index] = {"text": text, "tries": attempt + 1, "output": answer}
            todo = [i for i in todo if results[i]["text"] is None]
        return results


def hints_of(sample: Sample) -> str:
    """The source's own prompt: the labels kept by an earlier caption run, else the txt."""
    return sample.meta.get("caption", {}).get("hints", sample.prompt)


def parse_rewrite(answer: str, key: str) -> str | None:
    """The value of `{"<key>": "..."}` in the answer; None when there is none or it is the
    template's placeholder."""
    for match in re.finditer(r"\{.*?\}", answer, flags=re.S):
        try:
            value = json.loads(match.group(0)).get(key)
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, str) and value.strip() and "your rewritten" not in value:
            return value.strip()
    return None


def sample_frames(sample: Sample, count: int) -> np.ndarray:
    """`count` frames spread evenly over the interaction video, first and last included."""
    from dwm_data.video import decode

    frames = decode(sample.video)
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return frames[picks]


def relabel(sample: Sample, prompt: str, record: dict[str, Any]) -> Sample:
    """The same sample with a new prompt: every other member is the input's bytes."""
    meta = {**sample.meta, "caption": record}
    out = Sample(
        sample.key,
        sample.video,
        sample.static,
        sample.hand,
        prompt,
        meta,
        camera=sample.camera,
        hands=sample.hands,
        points=sample.points,
    )
    out.infos = sample.infos
    return out
