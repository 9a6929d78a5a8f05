"""`caption` options and its recipe section (a light module: the CLI reads it for `--help`).

The templates paraphrase the official ones (dwm-recipe.md section 6): an egocentric, first-person
description of what is seen, the source's labels as hints, then a rewrite into a regeneration
prompt answered as JSON. `{hints}` and `{caption}` are where the hints and the caption go.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dwm_data.options import BuilderOptions, Cli

TEMPLATE = (
    "Describe this video in detail, seen through my own eyes: first person, egocentric.\n\n"
    "The camera is my head. Any hands, arms, legs, feet or torso in view are mine; mention them as "
    "mine where they matter, without dwelling on them.\n\n"
    'Place things relative to me ("in front of me", "to my left", "within reach", "near my '
    'feet", "below eye level").\n\n'
    "Say only what can be seen: the place, its surfaces, objects and light, where they are around "
    "me, and what I do over time, including how objects change state.\n\n"
    "Write plain, objective sentences. No feelings, no guesses about intentions. Never describe "
    "me as another person, and never mention instructions or references."
)
HINT_TEMPLATE = (
    "\n\nNotes on what happens (use them to get the actions right):\n"
    "- Describe the noted actions as concrete things I do.\n"
    "- Phrase them naturally, in the first person.\n"
    "- Do not mention the notes.\n\n"
    "{hints}"
)
REWRITE_TEMPLATE = (
    "Rewrite the video description below so that a model can generate the video again from it:\n"
    "1. Do not open with phrases like 'The video shows' or 'In this scene'.\n"
    "2. Leave out subjective remarks that do not describe what is seen.\n"
    "3. Leave out statements about things that are not in the video.\n"
    "4. Keep the main subject's actions, their attributes and the order of their states, and the "
    "background (objects, place, time of day).\n"
    "5. Keep the viewpoint, camera motion and style where the description names them; do not "
    "invent them.\n"
    "6. Answer in this JSON format:\n"
    '{"rewritten description": "your rewritten description here"}\n\n'
    "Here is the video description:\n{caption}"
)


Device = Literal["auto", "cpu", "cuda"]
Engine = Literal["auto", "transformers", "vllm"]


class CaptionStep(BaseModel):
    """`caption.step`: every other builder (build-taste, build-ego, render-trumans, import-dwm,
    ...) captions each sample as `dwm-data caption` would, before the sample is written. Off
    while `vlm` is unset. `dwm-data caption` reads its models from its own options instead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vlm: str | None = Field(None, description="The vision-language model folder; unset: off.")
    rewriter: str | None = Field(None, description="The rewrite language model folder.")
    device: Device = "auto"
    engine: Engine = "auto"


class CaptionSection(BaseModel):
    """The recipe's `caption:` knobs; the defaults are the official settings (InternVL2 on 16
    uniformly sampled frames at temperature 0.1, the Llama rewrite at 0.7 with 10 tries)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(16, gt=0, description="Frames sampled uniformly from the video.")
    template: str = Field(TEMPLATE, min_length=1)
    hint_template: str = Field(HINT_TEMPLATE, pattern=r"\{hints\}")
    max_new_tokens: int = Field(512, gt=0)
    temperature: float = Field(0.1, ge=0)  # 0: greedy
    repetition_penalty: float = Field(1.1, gt=0)
    rewrite_template: str = Field(REWRITE_TEMPLATE, pattern=r"\{caption\}")
    rewrite_key: str = Field("rewritten description", min_length=1)  # the JSON answer's key
    rewrite_max_new_tokens: int = Field(1024, gt=0)
    rewrite_temperature: float = Field(0.7, ge=0)
    rewrite_tries: int = Field(10, gt=0)
    batch_size: int = Field(8, gt=0, description="Samples per generate call.")
    seed: int = 0
    step: CaptionStep = CaptionStep()

    def record(self) -> dict[str, object]:
        """The settings a caption's json records: the model folders are recorded by name, and
        whether it ran as a step or as `dwm-data caption` changes nothing in the caption."""
        return self.model_dump(exclude={"step"})


class CaptionOptions(BuilderOptions):
    shards: Annotated[str, Cli(argument=True, path=True)] = Field(
        description="The shards to caption: a run folder, a folder of tars, a tar or a glob."
    )
    captioner: Literal["vlm", "labels"] = Field(
        "vlm",
        description="vlm: a vision-language model writes the prompt; labels: keep the source's "
        "prompt (joined labels, spreadsheet captions), recorded as such.",
    )
    vlm: Annotated[str, Cli(path=True)] = Field(
        "models/SmolVLM-256M-Instruct",
        description="The vision-language model folder (transformers layout: config.json, "
        "processor and tokenizer files, safetensors).",
    )
    rewriter: Annotated[str | None, Cli(path=True)] = Field(
        None,
        description="A language model folder that rewrites each caption (the official data "
        "used Llama-3.1-8B-Instruct); none: the caption is the prompt.",
    )
    device: Device = Field(
        "auto", description="Where the models run; auto: the GPU when there is one."
    )
    engine: Engine = Field(
        "auto",
        description="What runs the models; auto: vLLM when it is installed and there is a GPU, "
        "else transformers.",
    )
