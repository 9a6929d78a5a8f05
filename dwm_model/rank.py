"""`dwm-data rank`: choose an action by simulating each candidate and scoring its outcome.

The DWM paper's planning use (its section 3.4): every candidate hand motion is simulated along
one camera path over one scene, and its generated video is scored against a goal, an image (LPIPS,
lower is better, between the final frame and the goal resized to the frame: the VGG LPIPS of
`dwm-data eval`) or a text (the mean cosine similarity of the frames to the text under a local
CLIP model from transformers, higher is better). With several seeds a candidate's score is the
mean over them; the order is by score, ties kept in the order the candidates were given, so a
seed gives one ranking. OUT holds `rank.json`, `rank.md`, `contact.png` (the candidates' last
frames in rank order) and one simulate result per candidate and seed under `candidates/`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dwm_data.errors import DwmDataError, MissingAssetError
from dwm_data.recipe import Recipe
from dwm_data.store import written_whole
from dwm_model.config import SampleConfig
from dwm_model.simulate import MotionSpec, SceneSpec, Simulator, generate, result_record

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
HOW_TO_GET_CLIP = (
    "download a CLIP model in transformers' layout (e.g. openai/clip-vit-base-patch32: "
    "config.json, model.safetensors, tokenizer and preprocessor files) and pass it with --clip"
)


@dataclass(frozen=True)
class Goal:
    """What a candidate is scored against."""

    kind: str  # "image" or "text"
    value: str  # the image's path or the text
    metric: str
    higher_is_better: bool


def parse_goal(goal: str) -> Goal:
    """An existing image file is an image goal; anything else is text (a path-looking string
    to a missing image is refused, not read as text)."""
    path = Path(goal)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.is_file():
            raise DwmDataError(f"goal image {path} does not exist")
        return Goal("image", str(path.resolve()), "lpips", False)
    if not goal.strip():
        raise DwmDataError("the goal is empty: give an image file or a text")
    return Goal("text", goal, "clip", True)


class ImageGoal:
    """LPIPS (VGG, `dwm_model.metrics.Lpips`) between the final frame and the goal image."""

    def __init__(self, goal: Goal, lpips_backbone: Path):
        from PIL import Image

        from dwm_model.metrics import Lpips

        self.model = Lpips(lpips_backbone)  # a missing backbone: one line, before any sampling
        self.image = Image.open(goal.value).convert("RGB")

    def __call__(self, video: np.ndarray) -> float:
        from PIL import Image

        last = video[-1]
        goal = np.array(self.image.resize((last.shape[1], last.shape[0]), Image.BICUBIC))
        return self.model(last[None], goal[None])


class TextGoal:
    """Mean over frames of the cosine similarity between CLIP's image and text embeddings."""

    def __init__(self, goal: Goal, folder: Path | None):
        if folder is None or not (folder / "config.json").is_file():
            raise MissingAssetError(
                "CLIP model for a text goal",
                str(folder) if folder else "nowhere (no --clip given)",
                HOW_TO_GET_CLIP,
            )
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
        self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
        self.text = goal.value

    def __call__(self, video: np.ndarray) -> float:
        import torch

        inputs = self.processor(
            text=[self.text], images=list(video), return_tensors="pt", padding=True
        )
        with torch.no_grad():
            images = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            text = self.model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            )
        images = _embedding(images)
        text = _embedding(text)
        return float(torch.nn.functional.cosine_similarity(images, text).mean())


def _embedding(output: Any):
    """The projected embedding, whether transformers returns a tensor or a model output."""
    return output if hasattr(output, "dim") else output.pooler_output


def scorer(goal: Goal, lpips_backbone: Path, clip: Path | None):
    return ImageGoal(goal, lpips_backbone) if goal.kind == "image" else TextGoal(goal, clip)


def rank(
    model,
    scene: SceneSpec,
    candidates: list[MotionSpec],
    goal: Goal,
    score,
    out: Path,
    recipe: Recipe,
    settings: SampleConfig,
    seeds: int = 1,
    prompt: str = "",
    overwrite: bool = False,
    inputs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Simulate, score and order the candidates; writes OUT whole (a temporary folder renamed)
    and returns the ranked rows."""
    from dwm_data.simulate.conditions import check_result_folder, write_result

    check_result_folder(out, overwrite, "rank.json")
    if not candidates:
        raise DwmDataError("give at least one --candidates motion")
    if seeds < 1:
        raise DwmDataError(f"--seeds must be at least 1, got {seeds}")
    simulator = Simulator(scene, recipe)
    conditions = [simulator.conditions(c) for c in candidates]  # every motion checked first
    names = _names(candidates)
    rows, last_frames = [], []
    with written_whole(out) as partial:
        for index, (name, cond) in enumerate(zip(names, conditions, strict=True)):
            scores, first = [], None
            for offset in range(seeds):
                seeded = settings.model_copy(update={"seed": settings.seed + offset})
                video = generate(model, cond, prompt, seeded)
                scores.append(float(score(video)))
                first = video if first is None else first
                record = result_record(cond, recipe, seeded, inputs)
                record["rank"] = {"goal": goal.__dict__, "score": scores[-1]}
                videos = {"static": cond.static, "hand": cond.hand, "video": video}
                folder = partial / "candidates" / f"{name}-seed{seeded.seed}"
                codecs = recipe.codecs.to_codecs()
                write_result(folder, videos, cond, prompt, record, recipe.video.rate, codecs, False)
            rows.append(
                {
                    "candidate": name,
                    "index": index,
                    "motion": cond.record["hands"],
                    "scores": scores,
                    "score": statistics.mean(scores),
                    "seeds": [settings.seed + o for o in range(seeds)],
                }
            )
            last_frames.append(first[-1])
        order = sorted(
            range(len(rows)),
            key=lambda i: (-rows[i]["score"] if goal.higher_is_better else rows[i]["score"], i),
        )
        ranked = [{"rank": r + 1, **rows[i]} for r, i in enumerate(order)]
        summary = {
            "goal": goal.__dict__,
            "better": "higher" if goal.higher_is_better else "lower",
            "inputs": inputs or {},
            "scene": simulator.record,
            "sample": settings.model_dump(),
            "ranked": ranked,
        }
        (partial / "rank.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        (partial / "rank.md").write_text(_markdown(ranked, goal))
        _contact_sheet([last_frames[i] for i in order], ranked, goal, partial / "contact.png")
    return ranked


def _names(candidates: list[MotionSpec]) -> list[str]:
    """File-safe names, numbered so that equal stems stay apart."""
    out = []
    for index, candidate in enumerate(candidates):
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in candidate.label())
        out.append(f"{index:02d}-{stem}")
    return out


def _markdown(ranked: list[dict[str, Any]], goal: Goal) -> str:
    better = "higher" if goal.higher_is_better else "lower"
    lines = [
        f"Goal ({goal.kind}): {goal.value}",
        "",
        f"| rank | candidate | {goal.metric} ({better} is better) | per seed |",
        "|---|---|---|---|",
    ]
    for row in ranked:
        seeds = ", ".join(f"{s:.4f}" for s in row["scores"])
        lines.append(f"| {row['rank']} | {row['candidate']} | {row['score']:.4f} | {seeds} |")
    return "\n".join(lines) + "\n"


def _contact_sheet(frames: list[np.ndarray], ranked: list[dict], goal: Goal, path: Path) -> None:
    """The goal image (for an image goal), then the last frames in rank order, each under its
    rank, name and score."""
    from PIL import Image, ImageDraw

    height, width = frames[0].shape[:2]
    scale = max(1, -(-160 // width))  # tiny clips enlarged to be legible
    panels = [(f"rank {r['rank']}: {r['candidate']}", f"{goal.metric} {r['score']:.4f}", f)
              for r, f in zip(ranked, frames, strict=True)]  # fmt: skip
    if goal.kind == "image":
        image = Image.open(goal.value).convert("RGB").resize((width, height), Image.BICUBIC)
        panels.insert(0, ("goal", Path(goal.value).name, np.asarray(image)))
    tiles = []
    for title, line, frame in panels:
        big = frame.repeat(scale, axis=0).repeat(scale, axis=1)
        label = Image.new("RGB", (big.shape[1], 30), (0, 0, 0))
        draw = ImageDraw.Draw(label)
        draw.text((2, 1), title, fill=(255, 255, 0))
        draw.text((2, 15), line, fill=(255, 255, 255))
        tiles.append(np.concatenate([np.asarray(label), big], axis=0))
        tiles.append(np.full((tiles[-1].shape[0], 2, 3), 255, np.uint8))
    Image.fromarray(np.concatenate(tiles[:-1], axis=1)).save(path)
