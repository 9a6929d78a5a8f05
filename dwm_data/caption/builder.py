"""`caption`: every input shard is a work unit; its samples come out with new prompts (see
`captioner.py`), so the run machinery plans, resumes and records failures as for any source."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dwm_data.builder import Builder, UnitContext, WorkUnit
from dwm_data.caption.options import CaptionOptions, CaptionSection
from dwm_data.errors import UnitError
from dwm_data.sample import Sample
from dwm_data.store import read_samples, shard_paths

VLM_HINT = (
    "download one, e.g. `hf download HuggingFaceTB/SmolVLM-256M-Instruct --local-dir DIR`, "
    "and pass --vlm DIR, or pass --captioner labels to keep the source's prompts"
)
LM_HINT = (
    "download one, e.g. `hf download meta-llama/Llama-3.1-8B-Instruct --local-dir DIR`, and "
    "pass --rewriter DIR, or leave --rewriter out to skip the rewrite"
)


class CaptionBuilder(Builder):
    Options = CaptionOptions

    def preflight(self) -> None:
        from dwm_data.caption.models import check_models

        shard_paths(self.options.shards)  # none there: one line
        if self.options.captioner == "labels":
            return
        opts = self.options
        rewriter = Path(opts.rewriter) if opts.rewriter else None
        check_models(Path(opts.vlm), rewriter, opts.device, opts.engine, (VLM_HINT, LM_HINT))

    def plan(self) -> list[WorkUnit]:
        return [
            WorkUnit(id=str(path), payload={"path": str(path)}, weight=path.stat().st_size)
            for path in (p.resolve() for p in shard_paths(self.options.shards))
        ]

    def setup(self) -> None:
        from dwm_data.caption.captioner import Captioner

        vlm = self.options.vlm if self.options.captioner == "vlm" else None
        rewriter = self.options.rewriter
        self.captioner = Captioner(
            self.recipe.section("caption", CaptionSection),
            Path(vlm) if vlm else None,
            Path(rewriter) if rewriter else None,
            self.options.device,
            self.options.engine,
        )

    def process(self, unit: WorkUnit, ctx: UnitContext) -> Iterable[Sample]:
        try:
            samples = list(read_samples(unit.payload["path"]))
        except Exception as exc:  # a broken tar or sample fails this shard, not the run
            raise UnitError("input", f"cannot read {unit.payload['path']}: {exc}") from exc
        return self.captioner.caption_all(samples, ctx.heartbeat)
