"""Captioning inside any builder: `--set caption.step.vlm=DIR` (or `caption: {step: {vlm: DIR}}`
in a recipe) makes build-taste, build-ego, render-trumans, import-dwm ... write each sample with
the prompt `dwm-data caption` would give it, the old prompt in `json` alike.

It is a recipe key, not an option of each command, because the recipe is what every builder
shares and what `plan.json` freezes: one key turns it on for every source, a run resumes with
it, a Slurm or Ray worker reads it from the plan, and captioning or not is a different run.
"""

from __future__ import annotations

from pathlib import Path

from dwm_data.builder import Builder, Step, UnitContext
from dwm_data.caption.options import CaptionOptions, CaptionSection
from dwm_data.sample import Sample

VLM_HINT = (
    "download one, e.g. `hf download HuggingFaceTB/SmolVLM-256M-Instruct --local-dir DIR`, "
    "and set caption.step.vlm=DIR, or unset it to keep the source's prompts"
)
LM_HINT = "set caption.step.rewriter to a language model folder, or unset it to skip the rewrite"


class CaptionStep(Step):
    """The models are loaded once per worker process (`setup`), not per unit."""

    def __init__(self, settings: CaptionSection, vlm: Path, rewriter: Path | None):
        self.settings, self.vlm, self.rewriter = settings, vlm, rewriter

    def preflight(self) -> None:
        from dwm_data.caption.models import check_models

        step = self.settings.step
        check_models(self.vlm, self.rewriter, step.device, step.engine, (VLM_HINT, LM_HINT))

    def setup(self) -> None:
        from dwm_data.caption.captioner import Captioner

        step = self.settings.step
        self.captioner = Captioner(self.settings, self.vlm, self.rewriter, step.device, step.engine)

    def apply(self, samples: list[Sample], ctx: UnitContext) -> list[Sample]:
        return self.captioner.caption_all(samples, ctx.heartbeat)


def caption_step(builder: Builder) -> CaptionStep | None:
    """The step when the recipe names a VLM; none for `dwm-data caption`, which is the step."""
    if isinstance(builder.options, CaptionOptions):
        return None
    settings = builder.recipe.section("caption", CaptionSection)
    step = settings.step
    if step.vlm is None:
        return None
    rewriter = Path(step.rewriter).expanduser() if step.rewriter else None
    return CaptionStep(settings, Path(step.vlm).expanduser(), rewriter)
